"""Building blocks shared by the model families: torch-compatible conv/pool semantics in NHWC.

Padding is explicit (``((p, p), (p, p))``) rather than ``"SAME"`` so that strided convolutions
and pools see exactly the windows torchvision's do; the initialisers mirror torchvision's.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.models import conv as conv_ops

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
         kernel_init=KAIMING_FAN_OUT, ndim: int = 2, dtype, param_dtype,
         rngs: nnx.Rngs) -> nnx.Conv:
    """nnx.Conv with torch-style integer padding on every spatial side (``ndim`` spatial dims),
    and the weight gradient that is fast on XLA:CPU (see models/conv.py)."""
    return nnx.Conv(
        in_features, out_features, (kernel_size,) * ndim, strides=(stride,) * ndim,
        padding=((padding, padding),) * ndim, feature_group_count=groups, use_bias=use_bias,
        kernel_init=kernel_init, dtype=dtype, param_dtype=param_dtype,
        conv_general_dilated=conv_ops.conv_general_dilated, rngs=rngs)


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
                 dtype, param_dtype, rngs: nnx.Rngs):
        if padding is None:
            padding = (kernel_size - 1) // 2
        self.conv = conv(in_features, out_features, kernel_size, stride, padding, groups=groups,
                         kernel_init=kernel_init, ndim=ndim, dtype=dtype,
                         param_dtype=param_dtype, rngs=rngs)
        self.bn = batch_norm(out_features, epsilon=epsilon, dtype=dtype,
                             param_dtype=param_dtype, rngs=rngs)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv(x)
        if not self.bn.use_running_average and conv_ops.cpu_fast_paths():
            return _training_batch_norm(self.bn, x, self.activation)
        x = self.bn(x)
        return x if self.activation is None else self.activation(x)


def _training_batch_norm(bn: nnx.BatchNorm, x: jax.Array,
                         activation: Callable[[jax.Array], jax.Array] | None) -> jax.Array:
    """``activation(bn(x))`` in training mode, as nnx.BatchNorm computes it (batch statistics
    in float32, E[x^2] - E[x]^2 variance, the same running-average update), with a gradient
    that reads x and the output gradient twice each and stores nothing but x.

    Left to autodiff, XLA:CPU stored x - mean and the normalized x as well and made more
    passes over them; past the 32 MB cache each pass runs at memory speed.
    """
    out, mean, var = _batch_norm_activation(x, bn.scale[...], bn.bias[...], bn.epsilon,
                                            activation)
    bn.mean[...] = jax.lax.stop_gradient(bn.momentum * bn.mean[...] + (1 - bn.momentum) * mean)
    bn.var[...] = jax.lax.stop_gradient(bn.momentum * bn.var[...] + (1 - bn.momentum) * var)
    return out.astype(bn.dtype or x.dtype)


def _statistics(x):
    axes = tuple(range(x.ndim - 1))
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=axes)
    var = jnp.maximum(jnp.mean(x * x, axis=axes) - mean * mean, 0.0)
    return mean, var


def _activate(z, activation):
    return z if activation is None else activation(z)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm_activation(x, scale, bias, epsilon, activation):
    """(activation((x - mean) / sqrt(var + epsilon) * scale + bias), mean, var) over all axes
    but the last. The statistics are returned for the running averages and not differentiated.
    """
    return _batch_norm_activation_fwd(x, scale, bias, epsilon, activation)[0]


def _batch_norm_activation_fwd(x, scale, bias, epsilon, activation):
    mean, var = _statistics(x)
    rstd = jax.lax.rsqrt(var + epsilon)
    z = (x.astype(jnp.float32) - mean) * (rstd * scale) + bias
    return (_activate(z, activation), mean, var), (x, scale, bias, mean, rstd)


def _batch_norm_activation_bwd(epsilon, activation, residuals, cotangents):
    x, scale, bias, mean, rstd = residuals
    g = cotangents[0].astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    normalized = (x.astype(jnp.float32) - mean) * rstd
    if activation is not None:
        _, activation_vjp = jax.vjp(activation, normalized * scale + bias)
        (g,) = activation_vjp(g)
    count = math.prod(x.shape[:-1])
    d_bias = jnp.sum(g, axis=axes)
    d_scale = jnp.sum(g * normalized, axis=axes)
    dx = (scale * rstd) * (g - (d_bias + normalized * d_scale) / count)
    return dx.astype(x.dtype), d_scale.astype(scale.dtype), d_bias.astype(bias.dtype)


_batch_norm_activation.defvjp(_batch_norm_activation_fwd, _batch_norm_activation_bwd)


def _pool_padding(size: int, window: int, stride: int, padding: int,
                  ceil_mode: bool) -> tuple[int, int]:
    """(low, high) padding that reproduces torch's pooling output size, ceil_mode included."""
    span = size + 2 * padding - window
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1  # torch: the last window must start inside the input or the left padding
    return padding, max((out - 1) * stride + window - size - padding, 0)


def max_pool(x: jax.Array, window: int, stride: int | None = None, padding: int = 0,
             ceil_mode: bool = False) -> jax.Array:
    """torch.nn.MaxPool{1,2}d on channels-last input: pads with -inf, ceil_mode supported.

    Padding is computed from static shapes only, so this is jit-friendly. On CPU the gradient
    is that of a running maximum over the window's strided slices: XLA:CPU's gradient of
    ``reduce_window`` (select-and-scatter) took 25x as long for a 2x2 pool (49 ms against
    1.8 ms, batch 128 of 28x28x32). Ties go to the first element of the window either way.
    """
    stride = window if stride is None else stride
    spatial = x.shape[1:-1]
    pads = tuple(_pool_padding(n, window, stride, padding, ceil_mode) for n in spatial)
    if conv_ops.cpu_fast_paths():
        return _cpu_max_pool(x, window, stride, pads)
    return _reduce_window_max_pool(x, window, stride, pads)


def _reduce_window_max_pool(x, window, stride, pads):
    nd = x.ndim - 2
    return nnx.max_pool(x, (window,) * nd, strides=(stride,) * nd, padding=pads)


def _running_max_pool(x, window, stride, pads):
    nd = x.ndim - 2
    padded = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    out_sizes = [(n - window) // stride + 1 for n in padded.shape[1:-1]]
    best = None
    for offset in itertools.product(range(window), repeat=nd):
        limit = (padded.shape[0], *(o + stride * (n - 1) + 1 for o, n in zip(offset, out_sizes)),
                 padded.shape[-1])
        tap = jax.lax.slice(padded, (0, *offset, 0), limit, (1, *(stride,) * nd, 1))
        best = tap if best is None else jnp.where(tap > best, tap, best)
    return best


# Forward: reduce_window (faster than the running maximum inside a model's fusions);
# backward: the running maximum's gradient.
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _cpu_max_pool(x, window, stride, pads):
    return _reduce_window_max_pool(x, window, stride, pads)


def _cpu_max_pool_fwd(x, window, stride, pads):
    return _reduce_window_max_pool(x, window, stride, pads), x


def _cpu_max_pool_bwd(window, stride, pads, x, g):
    _, vjp = jax.vjp(lambda x: _running_max_pool(x, window, stride, pads), x)
    return vjp(g)


_cpu_max_pool.defvjp(_cpu_max_pool_fwd, _cpu_max_pool_bwd)


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
