"""Small CNNs for the native 28x28 images: SimpleCNN1, SimpleCNN2 and LeNet-5.

The AstroSpectra-MNIST paper describes SimpleCNN1/2 only as two convolution+pooling blocks
followed by dense layers, SimpleCNN2 being the stronger; the layer widths below are ours.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.models import layers
from astrospectra_jax.models.kernels import XLA, Kernels


class SimpleCNN1(layers.Classifier):
    """Two conv+pool blocks and two dense layers (420,739 parameters for 3 classes).

    ==========================================  =============
    layer                                        output
    ==========================================  =============
    conv 3x3, 32, padding 1, ReLU                28x28x32
    max-pool 2x2                                 14x14x32
    conv 3x3, 64, padding 1, ReLU                14x14x64
    max-pool 2x2                                 7x7x64
    flatten, dense 128, ReLU                     128
    dense num_classes                            num_classes
    ==========================================  =============
    """

    input_size = 28
    classifier_name = "fc2"

    def __init__(self, num_classes: int = 3, *, kernels: Kernels = XLA, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv_kw = dict(kernels=kernels, **kw)
        self.dtype = dtype
        self.kernels = kernels
        self.conv1 = layers.conv(1, 32, 3, padding=1, use_bias=True, **conv_kw)
        self.conv2 = layers.conv(32, 64, 3, padding=1, use_bias=True, **conv_kw)
        self.fc1 = layers.linear(7 * 7 * 64, 128, **kw)
        self.fc2 = layers.linear(128, num_classes, **kw)

    def features(self, x: jax.Array) -> jax.Array:
        layers.check_image_input(x, self.input_size, "simplecnn1")
        x = x.astype(self.dtype)
        x = layers.max_pool(nnx.relu(self.conv1(x)), 2, kernels=self.kernels)
        x = layers.max_pool(nnx.relu(self.conv2(x)), 2, kernels=self.kernels)
        return nnx.relu(self.fc1(x.reshape(x.shape[0], -1)))


class SimpleCNN2(layers.Classifier):
    """The stronger variant: wider, two convs per block, batch norm and dropout (1,866,307
    parameters for 3 classes).

    ==============================================  =============
    layer                                            output
    ==============================================  =============
    2x [conv 3x3, 64, padding 1, BN, ReLU]           28x28x64
    max-pool 2x2, dropout 0.25                       14x14x64
    2x [conv 3x3, 128, padding 1, BN, ReLU]          14x14x128
    max-pool 2x2, dropout 0.25                       7x7x128
    flatten, dense 256 (no bias), BN, ReLU           256
    dropout 0.5, dense num_classes                   num_classes
    ==============================================  =============
    """

    input_size = 28
    classifier_name, dropout_name = "fc2", "drop_fc"

    def __init__(self, num_classes: int = 3, *, kernels: Kernels = XLA, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv_kw = dict(kernels=kernels, **kw)
        self.dtype = dtype
        self.kernels = kernels
        self.block1 = nnx.Sequential(layers.ConvBN(1, 64, 3, **conv_kw),
                                     layers.ConvBN(64, 64, 3, **conv_kw))
        self.block2 = nnx.Sequential(layers.ConvBN(64, 128, 3, **conv_kw),
                                     layers.ConvBN(128, 128, 3, **conv_kw))
        self.drop_conv = nnx.Dropout(0.25, rngs=rngs)
        self.fc1 = nnx.Linear(7 * 7 * 128, 256, use_bias=False, kernel_init=layers.TORCH_DEFAULT,
                              **kw)
        self.bn_fc1 = layers.batch_norm(256, **kw)
        self.drop_fc = nnx.Dropout(0.5, rngs=rngs)
        self.fc2 = layers.linear(256, num_classes, **kw)

    def features(self, x: jax.Array) -> jax.Array:
        layers.check_image_input(x, self.input_size, "simplecnn2")
        x = x.astype(self.dtype)
        x = self.drop_conv(layers.max_pool(self.block1(x), 2, kernels=self.kernels))
        x = self.drop_conv(layers.max_pool(self.block2(x), 2, kernels=self.kernels))
        return nnx.relu(self.bn_fc1(self.fc1(x.reshape(x.shape[0], -1))))


class LeNet(layers.Classifier):
    """LeNet-5 (LeCun et al. 1998) on 28x28 inputs: 61,111 parameters for 3 classes.

    The classic form: tanh activations and 2x2 average-pool subsampling (parameter-free, so the
    count matches the usual 61,111 with 3 outputs; the 1998 paper's trainable subsampling
    coefficients and sparse C3 connections are not reproduced, as in most modern ports).

    ==========================================  =============
    layer                                        output
    ==========================================  =============
    C1: conv 5x5, 6, padding 2, tanh             28x28x6
    S2: average-pool 2x2                         14x14x6
    C3: conv 5x5, 16 (valid), tanh               10x10x16
    S4: average-pool 2x2                         5x5x16
    F5: flatten, dense 120, tanh                 120
    F6: dense 84, tanh                           84
    output: dense num_classes                    num_classes
    ==========================================  =============
    """

    input_size = 28
    classifier_name = "output"

    def __init__(self, num_classes: int = 3, *, kernels: Kernels = XLA, dtype=jnp.float32,
                 param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv_kw = dict(kernels=kernels, **kw)
        self.dtype = dtype
        self.kernels = kernels
        self.c1 = layers.conv(1, 6, 5, padding=2, use_bias=True,
                              kernel_init=layers.TORCH_DEFAULT, **conv_kw)
        self.c3 = layers.conv(6, 16, 5, use_bias=True, kernel_init=layers.TORCH_DEFAULT,
                              **conv_kw)
        self.f5 = layers.linear(5 * 5 * 16, 120, **kw)
        self.f6 = layers.linear(120, 84, **kw)
        self.output = layers.linear(84, num_classes, **kw)

    def features(self, x: jax.Array) -> jax.Array:
        layers.check_image_input(x, self.input_size, "lenet")
        x = x.astype(self.dtype)
        x = layers.avg_pool(jnp.tanh(self.c1(x)), 2)
        x = layers.avg_pool(jnp.tanh(self.c3(x)), 2)
        x = jnp.tanh(self.f5(x.reshape(x.shape[0], -1)))
        return jnp.tanh(self.f6(x))
