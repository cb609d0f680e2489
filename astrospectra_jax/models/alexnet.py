"""AlexNet as in torchvision (one input channel), plus a native 28x28 variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.models import layers
from astrospectra_jax.models.kernels import XLA, Kernels


class AlexNet(layers.Classifier):
    """torchvision's AlexNet (the single-GPU "one weird trick" widths).

    input_size=224 (57,000,643 parameters for 3 classes)::

        conv 11x11/4, 64, pad 2, ReLU -> 55x55; max-pool 3/2 -> 27x27
        conv 5x5, 192, pad 2, ReLU -> 27x27;    max-pool 3/2 -> 13x13
        conv 3x3, 384 / 256 / 256, pad 1, ReLU -> 13x13; max-pool 3/2 -> 6x6
        adaptive average pool 6x6, flatten 9216
        dropout 0.5, dense 4096, ReLU, dropout 0.5, dense 4096, ReLU, dense num_classes

    input_size=28: only the stem changes. The 11x11 stride-4 convolution becomes 3x3 stride 1
    (pad 1) and the first max-pool is dropped, so conv2 runs at 28x28 and the remaining two
    pools give 28 -> 13 -> 6: the classifier sees the same 6x6x256 map as at 224 and is unchanged
    (56,993,475 parameters).

    Initialisation is torch's default (AlexNet has no custom init in torchvision); biases start
    at zero.
    """

    classifier_name = "fc3"

    def __init__(self, num_classes: int = 3, *, input_size: int = 224, kernels: Kernels = XLA,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv_kw = dict(use_bias=True, kernel_init=layers.TORCH_DEFAULT, kernels=kernels, **kw)
        self.input_size = input_size
        self.dtype = dtype
        self.kernels = kernels
        self.native = input_size != 224
        if self.native:
            self.conv1 = layers.conv(1, 64, 3, 1, 1, **conv_kw)
        else:
            self.conv1 = layers.conv(1, 64, 11, 4, 2, **conv_kw)
        self.conv2 = layers.conv(64, 192, 5, 1, 2, **conv_kw)
        self.conv3 = layers.conv(192, 384, 3, 1, 1, **conv_kw)
        self.conv4 = layers.conv(384, 256, 3, 1, 1, **conv_kw)
        self.conv5 = layers.conv(256, 256, 3, 1, 1, **conv_kw)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.fc1 = layers.linear(256 * 6 * 6, 4096, **kw)
        self.fc2 = layers.linear(4096, 4096, **kw)
        self.fc3 = layers.linear(4096, num_classes, **kw)

    def features(self, x: jax.Array) -> jax.Array:
        layers.check_image_input(x, self.input_size, "alexnet")
        x = nnx.relu(self.conv1(x.astype(self.dtype)))
        if not self.native:
            x = layers.max_pool(x, 3, 2, kernels=self.kernels)
        x = layers.max_pool(nnx.relu(self.conv2(x)), 3, 2, kernels=self.kernels)
        x = nnx.relu(self.conv3(x))
        x = nnx.relu(self.conv4(x))
        x = layers.max_pool(nnx.relu(self.conv5(x)), 3, 2, kernels=self.kernels)
        x = layers.adaptive_avg_pool(x, (6, 6))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.fc1(self.dropout(x)))
        return nnx.relu(self.fc2(self.dropout(x)))
