"""GoogLeNet (Inception v1) as in torchvision, without auxiliary heads, plus a 28x28 variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.models import layers
from astrospectra_jax.models.kernels import XLA, Kernels

# torchvision's GoogLeNet uses BatchNorm2d(eps=0.001) in BasicConv2d, and N(0, 0.01) weights
# (trunc_normal_ with bounds +-2, i.e. +-200 sigma, so effectively untruncated).
GOOGLENET_EPSILON = 1e-3
GOOGLENET_INIT = nnx.initializers.normal(0.01)

# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) per inception module, torchvision's order.
INCEPTION3 = ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64))
INCEPTION4 = ((192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64),
              (128, 128, 256, 24, 64, 64), (112, 144, 288, 32, 64, 64),
              (256, 160, 320, 32, 128, 128))
INCEPTION5 = ((256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128))


class Inception(nnx.Module):
    """Four parallel branches concatenated on channels: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 (torchvision
    uses 3x3 here where the paper has 5x5); 3x3 max-pool (stride 1) -> 1x1."""

    def __init__(self, in_features: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int,
                 ch5x5: int, pool_proj: int, *, kernels: Kernels, dtype, param_dtype,
                 rngs: nnx.Rngs):
        kw = dict(kernel_init=GOOGLENET_INIT, epsilon=GOOGLENET_EPSILON, kernels=kernels,
                  dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.branch1 = layers.ConvBN(in_features, ch1x1, 1, **kw)
        self.branch2 = nnx.Sequential(layers.ConvBN(in_features, ch3x3red, 1, **kw),
                                      layers.ConvBN(ch3x3red, ch3x3, 3, **kw))
        self.branch3 = nnx.Sequential(layers.ConvBN(in_features, ch5x5red, 1, **kw),
                                      layers.ConvBN(ch5x5red, ch5x5, 3, **kw))
        self.branch4 = layers.ConvBN(in_features, pool_proj, 1, **kw)
        self.out_features = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.kernels = kernels

    def __call__(self, x: jax.Array) -> jax.Array:
        pooled = layers.max_pool(x, 3, 1, padding=1, ceil_mode=True, kernels=self.kernels)
        return jnp.concatenate(
            [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(pooled)], axis=-1)


class GoogLeNet(layers.Classifier):
    """torchvision's googlenet(aux_logits=False) with one input channel.

    input_size=224 (5,596,707 parameters for 3 classes)::

        conv 7x7/2, 64 -> 112; max-pool 3/2 (ceil) -> 56
        conv 1x1, 64; conv 3x3, 192 -> 56; max-pool 3/2 (ceil) -> 28
        inception 3a, 3b -> 28x28x480; max-pool 3/2 (ceil) -> 14
        inception 4a .. 4e -> 14x14x832; max-pool 2/2 (ceil) -> 7
        inception 5a, 5b -> 7x7x1024; global average pool; dropout 0.2; dense num_classes

    Every conv is conv (no bias) + BN (eps 1e-3) + ReLU.

    input_size=28 (5,594,147 parameters): the stem is made stride-free. The 7x7 stride-2 conv
    becomes 3x3 stride 1 and the two stem max-pools are dropped, so conv2/conv3 run at 28x28 and
    the inception stages see 28 -> 14 -> 7, exactly the resolutions they have at 224.
    """

    dropout_name = "dropout"

    def __init__(self, num_classes: int = 3, *, input_size: int = 224, kernels: Kernels = XLA,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv_kw = dict(kernel_init=GOOGLENET_INIT, epsilon=GOOGLENET_EPSILON, kernels=kernels,
                       **kw)
        self.input_size = input_size
        self.dtype = dtype
        self.kernels = kernels
        self.native = input_size != 224
        if self.native:
            self.conv1 = layers.ConvBN(1, 64, 3, 1, **conv_kw)
        else:
            self.conv1 = layers.ConvBN(1, 64, 7, 2, **conv_kw)
        self.conv2 = layers.ConvBN(64, 64, 1, **conv_kw)
        self.conv3 = layers.ConvBN(64, 192, 3, **conv_kw)
        stages, in_features = [], 192
        for config in (INCEPTION3, INCEPTION4, INCEPTION5):
            modules = []
            for channels in config:
                modules.append(Inception(in_features, *channels, kernels=kernels, **kw))
                in_features = modules[-1].out_features
            stages.append(nnx.Sequential(*modules))
        self.inception3, self.inception4, self.inception5 = stages
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.fc = layers.linear(in_features, num_classes, kernel_init=GOOGLENET_INIT, **kw)

    def features(self, x: jax.Array) -> jax.Array:
        layers.check_image_input(x, self.input_size, "googlenet")
        x = self.conv1(x.astype(self.dtype))
        if not self.native:
            x = layers.max_pool(x, 3, 2, ceil_mode=True, kernels=self.kernels)
        x = self.conv3(self.conv2(x))
        if not self.native:
            x = layers.max_pool(x, 3, 2, ceil_mode=True, kernels=self.kernels)
        x = layers.max_pool(self.inception3(x), 3, 2, ceil_mode=True, kernels=self.kernels)
        x = layers.max_pool(self.inception4(x), 2, 2, ceil_mode=True, kernels=self.kernels)
        return layers.global_avg_pool(self.inception5(x))
