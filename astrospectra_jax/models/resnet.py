"""ResNet-18 as in torchvision (one input channel), plus the CIFAR-style 28x28 variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.models import layers
from astrospectra_jax.models.kernels import XLA, Kernels


class BasicBlock(layers.ResidualBlock):
    """torchvision's basic block (``layers.ResidualBlock`` in 2-D), its projection shortcut
    under torchvision's name."""

    shortcut_name = "downsample"


class ResNet(layers.Classifier):
    """torchvision's ResNet with basic blocks; ``stage_sizes=(2, 2, 2, 2)`` is ResNet-18.

    input_size=224 (ResNet-18: 11,171,779 parameters for 3 classes)::

        conv 7x7/2, 64, BN, ReLU -> 112; max-pool 3/2 pad 1 -> 56
        stage 64 -> 56; stage 128 /2 -> 28; stage 256 /2 -> 14; stage 512 /2 -> 7
        global average pool, dense num_classes

    input_size=28 (11,169,219 parameters): the CIFAR ResNet stem of He et al. (2016): one 3x3
    stride-1 conv and no max-pool, so the stages run at 28 -> 14 -> 7 -> 4.

    Initialisation as torchvision: conv kaiming-normal (fan-out), BN scale 1 / bias 0, dense
    torch default with a zero bias.
    """

    def __init__(self, num_classes: int = 3, *, input_size: int = 224,
                 stage_sizes=(2, 2, 2, 2), kernels: Kernels = XLA, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv_kw = dict(kernels=kernels, **kw)
        self.input_size = input_size
        self.dtype = dtype
        self.kernels = kernels
        self.native = input_size != 224
        if self.native:
            self.stem = layers.ConvBN(1, 64, 3, 1, **conv_kw)
        else:
            self.stem = layers.ConvBN(1, 64, 7, 2, **conv_kw)
        blocks, in_features = [], 64
        for stage, count in enumerate(stage_sizes):
            out_features = 64 * 2**stage
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(in_features, out_features, stride, **conv_kw))
                in_features = out_features
        self.blocks = nnx.Sequential(*blocks)
        self.fc = layers.linear(in_features, num_classes, **kw)

    def features(self, x: jax.Array) -> jax.Array:
        layers.check_image_input(x, self.input_size, "resnet18")
        x = self.stem(x.astype(self.dtype))
        if not self.native:
            x = layers.max_pool(x, 3, 2, padding=1, kernels=self.kernels)
        return layers.global_avg_pool(self.blocks(x))
