"""MobileNetV2 (width 1.0) as in torchvision, plus a native 28x28 variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.models import layers
from astrospectra_jax.models.kernels import XLA, Kernels

# torchvision's inverted-residual settings: expansion t, output channels c, repeats n, stride s.
MOBILENETV2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                        (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nnx.Module):
    """1x1 expansion (skipped when t=1) - 3x3 depthwise (stride) - 1x1 linear projection, each
    with BN (ReLU6 after the first two); identity shortcut when stride 1 and widths match."""

    def __init__(self, in_features: int, out_features: int, stride: int, expansion: int, *,
                 kernels: Kernels, dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(kernels=kernels, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        hidden = in_features * expansion
        convs = []
        if expansion != 1:
            convs.append(layers.ConvBN(in_features, hidden, 1, activation=nnx.relu6, **kw))
        convs.append(layers.ConvBN(hidden, hidden, 3, stride, groups=hidden,
                                   activation=nnx.relu6, **kw))
        convs.append(layers.ConvBN(hidden, out_features, 1, activation=None, **kw))
        self.convs = nnx.Sequential(*convs)
        self.residual = stride == 1 and in_features == out_features

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.convs(x)
        return x + y if self.residual else y


class MobileNetV2(layers.Classifier):
    """torchvision's mobilenet_v2 (width multiplier 1.0) with one input channel.

    input_size=224 (2,227,139 parameters for 3 classes)::

        conv 3x3/2, 32, BN, ReLU6 -> 112
        inverted residuals (t, c, n, s): (1,16,1,1) (6,24,2,2) (6,32,3,2) (6,64,4,2)
                                         (6,96,3,1) (6,160,3,2) (6,320,1,1) -> 7x7x320
        conv 1x1, 1280, BN, ReLU6; global average pool; dropout 0.2; dense num_classes

    input_size=28 (same 2,227,139 parameters): the CIFAR adaptation, total stride 32 -> 8. The
    stem conv and the first stride-2 stage (c=24) use stride 1, so the map goes 28 (stem, c=16,
    c=24) -> 14 (c=32) -> 7 (c=64, c=96) -> 4 (c=160, c=320).

    Initialisation as torchvision: conv kaiming-normal (fan-out), BN 1 / 0, dense N(0, 0.01),
    zero biases.
    """

    dropout_name = "dropout"

    def __init__(self, num_classes: int = 3, *, input_size: int = 224, kernels: Kernels = XLA,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv_kw = dict(kernels=kernels, **kw)
        self.input_size = input_size
        self.dtype = dtype
        native = input_size != 224
        self.stem = layers.ConvBN(1, 32, 3, 1 if native else 2, activation=nnx.relu6, **conv_kw)
        blocks, in_features = [], 32
        for expansion, out_features, repeats, stride in MOBILENETV2_SETTINGS:
            if native and out_features == 24:
                stride = 1
            for index in range(repeats):
                blocks.append(InvertedResidual(in_features, out_features,
                                               stride if index == 0 else 1, expansion, **conv_kw))
                in_features = out_features
        self.blocks = nnx.Sequential(*blocks)
        self.head = layers.ConvBN(in_features, 1280, 1, activation=nnx.relu6, **conv_kw)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.fc = layers.linear(1280, num_classes, kernel_init=nnx.initializers.normal(0.01),
                                **kw)

    def features(self, x: jax.Array) -> jax.Array:
        layers.check_image_input(x, self.input_size, "mobilenetv2")
        x = self.head(self.blocks(self.stem(x.astype(self.dtype))))
        return layers.global_avg_pool(x)
