"""Building blocks shared by the model families: torch-compatible conv/pool semantics in NHWC.

Padding is explicit (``((p, p), (p, p))``) rather than ``"SAME"`` so that strided convolutions
and pools see exactly the windows torchvision's do; the initialisers mirror torchvision's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.models.kernels import Kernels, xla

# torchvision: nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu").
KAIMING_FAN_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
# He initialisation for a ReLU layer, preserving the activation scale going forward.
KAIMING_FAN_IN = nnx.initializers.variance_scaling(2.0, "fan_in", "normal")
# torch's default for nn.Conv*/nn.Linear weights: kaiming_uniform_(a=sqrt(5)) = U(+-1/sqrt(fan_in)).
TORCH_DEFAULT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

# torchvision's BatchNorm2d defaults: momentum 0.1 on the new batch = 0.9 on the running average.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv(in_features: int, out_features: int, kernel_size: int, stride: int = 1,
         padding: int = 0, *, groups: int = 1, use_bias: bool = False,
         kernel_init=KAIMING_FAN_OUT, ndim: int = 2, kernels: Kernels, dtype, param_dtype,
         rngs: nnx.Rngs) -> nnx.Conv:
    """nnx.Conv with torch-style integer padding on every spatial side (``ndim`` spatial dims),
    convolving with ``kernels.conv_general_dilated``."""
    return nnx.Conv(
        in_features, out_features, (kernel_size,) * ndim, strides=(stride,) * ndim,
        padding=((padding, padding),) * ndim, feature_group_count=groups, use_bias=use_bias,
        kernel_init=kernel_init, dtype=dtype, param_dtype=param_dtype,
        conv_general_dilated=kernels.conv_general_dilated, rngs=rngs)


def batch_norm(num_features: int, *, epsilon: float = BN_EPSILON, dtype, param_dtype,
               rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm over the channel (last) axis with torchvision's momentum and epsilon."""
    return nnx.BatchNorm(num_features, momentum=BN_MOMENTUM, epsilon=epsilon, dtype=dtype,
                         param_dtype=param_dtype, rngs=rngs)


def linear(in_features: int, out_features: int, *, kernel_init=TORCH_DEFAULT, dtype,
           param_dtype, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_features, out_features, kernel_init=kernel_init, dtype=dtype,
                      param_dtype=param_dtype, rngs=rngs)


class ConvBN(nnx.Module):
    """Bias-free convolution, batch norm, then an optional activation (torchvision's
    Conv2dNormActivation / GoogLeNet's BasicConv2d / ResNet's conv-bn pairs)."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, *, groups: int = 1,
                 activation: Callable[[jax.Array], jax.Array] | None = nnx.relu,
                 kernel_init=KAIMING_FAN_OUT, epsilon: float = BN_EPSILON, ndim: int = 2,
                 kernels: Kernels, dtype, param_dtype, rngs: nnx.Rngs):
        if padding is None:
            padding = (kernel_size - 1) // 2
        self.conv = conv(in_features, out_features, kernel_size, stride, padding, groups=groups,
                         kernel_init=kernel_init, ndim=ndim, kernels=kernels, dtype=dtype,
                         param_dtype=param_dtype, rngs=rngs)
        self.bn = batch_norm(out_features, epsilon=epsilon, dtype=dtype,
                             param_dtype=param_dtype, rngs=rngs)
        self.activation = activation
        self.kernels = kernels

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv(x)
        bn = self.bn
        if bn.use_running_average:
            return xla.activate(bn(x), self.activation)
        y, mean, var = self.kernels.batch_norm_activation(
            x, bn.scale[...], bn.bias[...], bn.epsilon, self.activation, bn.dtype)
        update_running_statistics(bn, mean, var)
        return y


def update_running_statistics(bn: nnx.BatchNorm, mean: jax.Array, var: jax.Array) -> None:
    """The training-mode update of nnx.BatchNorm's running averages from one batch's
    statistics: ``momentum * running + (1 - momentum) * batch``, not differentiated."""
    bn.mean[...] = jax.lax.stop_gradient(bn.momentum * bn.mean[...] + (1 - bn.momentum) * mean)
    bn.var[...] = jax.lax.stop_gradient(bn.momentum * bn.var[...] + (1 - bn.momentum) * var)


class ResidualBlock(nnx.Module):
    """ResNet's basic block in ``ndim`` spatial dimensions: conv k3 (stride) - BN - ReLU -
    conv k3 - BN, plus the shortcut, then ReLU. The shortcut is a 1x1 strided conv + BN when
    the shape changes (torchvision's ``downsample``), stored under ``shortcut_name`` so that
    each model keeps its parameter paths."""

    shortcut_name = "shortcut"

    def __init__(self, in_features: int, out_features: int, stride: int, *, ndim: int = 2,
                 kernels: Kernels, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(ndim=ndim, kernels=kernels, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = ConvBN(in_features, out_features, 3, stride, **kw)
        self.conv2 = ConvBN(out_features, out_features, 3, activation=None, **kw)
        shortcut = None
        if stride != 1 or in_features != out_features:
            shortcut = ConvBN(in_features, out_features, 1, stride, activation=None, **kw)
        setattr(self, self.shortcut_name, shortcut)

    def __call__(self, x: jax.Array) -> jax.Array:
        projection = getattr(self, self.shortcut_name)
        shortcut = x if projection is None else projection(x)
        return nnx.relu(self.conv2(self.conv1(x)) + shortcut)


class Classifier(nnx.Module):
    """A model whose logits are a final dense layer over a feature vector.

    Subclasses define ``features(x) -> (B, D)``, the penultimate representation (the final
    dense layer's input, in the compute dtype), and name that layer in ``classifier_name``
    (the attribute it was always stored under, so parameter paths stay those of earlier
    checkpoints) and the dropout applied just before it, if any, in ``dropout_name``. Then
    ``model(x) == model.classify(model.features(x))``, and in evaluation mode (no dropout)
    ``model.classifier(model.features(x))`` gives the same logits.
    """

    classifier_name = "fc"
    dropout_name: str | None = None

    @property
    def classifier(self) -> nnx.Linear:
        return getattr(self, self.classifier_name)

    def features(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def classify(self, features: jax.Array) -> jax.Array:
        """float32 logits (B, num_classes) from ``features(x)``."""
        if self.dropout_name is not None:
            features = getattr(self, self.dropout_name)(features)
        return self.classifier(features).astype(jnp.float32)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.classify(self.features(x))


def _pool_padding(size: int, window: int, stride: int, padding: int,
                  ceil_mode: bool) -> tuple[int, int]:
    """(low, high) padding that reproduces torch's pooling output size, ceil_mode included."""
    span = size + 2 * padding - window
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # torch: the last window must start inside the input or the left padding
    return padding, max((out - 1) * stride + window - size - padding, 0)


def max_pool(x: jax.Array, window: int, stride: int | None = None, padding: int = 0,
             ceil_mode: bool = False, *, kernels: Kernels) -> jax.Array:
    """torch.nn.MaxPool{1,2}d on channels-last input: pads with -inf, ceil_mode supported.

    Padding is computed from static shapes only, so this is jit-friendly.
    """
    stride = window if stride is None else stride
    pads = tuple(_pool_padding(n, window, stride, padding, ceil_mode) for n in x.shape[1:-1])
    return kernels.max_pool(x, window, stride, pads)


def avg_pool(x: jax.Array, window: int, stride: int | None = None) -> jax.Array:
    """Unpadded average pooling (torch.nn.AvgPool2d without padding)."""
    stride = window if stride is None else stride
    nd = x.ndim - 2
    return nnx.avg_pool(x, (window,) * nd, strides=(stride,) * nd, padding="VALID")


def global_avg_pool(x: jax.Array) -> jax.Array:
    """Mean over all spatial axes: (B, ..., C) -> (B, C); accumulates in float32."""
    return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)), dtype=jnp.float32).astype(x.dtype)


def adaptive_avg_pool(x: jax.Array, output_size: Sequence[int]) -> jax.Array:
    """torch.nn.AdaptiveAvgPool2d on NHWC input.

    Output cell i averages rows floor(i*H/out) .. ceil((i+1)*H/out) - 1, as in torch. Equal sizes
    are a no-op and exact multiples a reshape-mean; other sizes use a small averaging matrix.
    """
    for axis, out in zip((1, 2), output_size):
        size = x.shape[axis]
        if size == out:
            continue
        if size % out == 0:
            shape = x.shape[:axis] + (out, size // out) + x.shape[axis + 1:]
            x = jnp.mean(x.reshape(shape), axis=axis + 1)
            continue
        weights = [[0.0] * size for _ in range(out)]
        for i in range(out):
            start, stop = (i * size) // out, math.ceil((i + 1) * size / out)
            for j in range(start, stop):
                weights[i][j] = 1.0 / (stop - start)
        matrix = jnp.asarray(weights, dtype=x.dtype)
        x = jnp.moveaxis(jnp.tensordot(x, matrix, axes=((axis,), (1,))), -1, axis)
    return x


def check_image_input(x: jax.Array, size: int, name: str) -> None:
    """Fail at trace time (static shapes) when an image batch does not match the model."""
    if x.ndim != 4 or x.shape[1:] != (size, size, 1):
        raise ValueError(
            f"{name} built for input_size={size} expects images of shape (B, {size}, {size}, 1); "
            f"got {tuple(x.shape)}")
