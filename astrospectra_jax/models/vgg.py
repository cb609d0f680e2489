"""VGG16 (configuration "D", no batch norm) as in torchvision, plus a native 28x28 variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.models import layers
from astrospectra_jax.models.kernels import XLA, Kernels

# Output channels of the 3x3 convolutions, one tuple per block; a max-pool closes each block.
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(layers.Classifier):
    """torchvision's vgg16: 13 conv 3x3 (pad 1) + ReLU layers in five blocks, each block closed
    by a 2x2 max-pool.

    input_size=224 (134,271,683 parameters for 3 classes): 224 -> 112 -> 56 -> 28 -> 14 -> 7,
    adaptive average pool 7x7, flatten 25088, then dense 4096, ReLU, dropout 0.5, dense 4096,
    ReLU, dropout 0.5, dense num_classes.

    input_size=28 (15,240,387 parameters): all 13 convolutions are kept; the five pools use
    ceil mode (torch's ``ceil_mode=True``) so the map shrinks 28 -> 14 -> 7 -> 4 -> 2 -> 1 and
    every block still sees at least 2x2. A 7x7 map cannot be made from 1x1 without copying it
    49 times, so the classifier keeps torchvision's three dense layers at width 512 (as CIFAR
    VGGs do): dense 512, ReLU, dropout 0.5, dense 512, ReLU, dropout 0.5, dense num_classes.

    Initialisation as torchvision: conv kaiming-normal (fan-out), dense N(0, 0.01), zero biases;
    the 28x28 head instead uses He-normal (fan-in) hidden layers and torch's default output layer.
    """

    classifier_name, dropout_name = "fc3", "dropout"

    def __init__(self, num_classes: int = 3, *, input_size: int = 224, kernels: Kernels = XLA,
                 dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.input_size = input_size
        self.dtype = dtype
        self.kernels = kernels
        self.native = input_size != 224
        convs, blocks, in_features = [], [], 1
        for block in VGG16_BLOCKS:
            blocks.append(len(block))
            for out_features in block:
                convs.append(layers.conv(in_features, out_features, 3, 1, 1, use_bias=True,
                                          kernels=kernels, **kw))
                in_features = out_features
        self.convs = nnx.List(convs)
        self.block_lengths = tuple(blocks)
        if self.native:
            # N(0, 0.01) suits torchvision's 25088-input head; on 512 inputs it would shrink
            # the logits ~1e4-fold, so the small head uses fan-in scaling (He for ReLU layers).
            flat, hidden, hidden_init = 512, 512, layers.KAIMING_FAN_IN
            output_init = layers.TORCH_DEFAULT
        else:
            flat, hidden = 512 * 7 * 7, 4096
            hidden_init = output_init = nnx.initializers.normal(0.01)
        self.fc1 = layers.linear(flat, hidden, kernel_init=hidden_init, **kw)
        self.fc2 = layers.linear(hidden, hidden, kernel_init=hidden_init, **kw)
        self.fc3 = layers.linear(hidden, num_classes, kernel_init=output_init, **kw)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        layers.check_image_input(x, self.input_size, "vgg16")
        x = x.astype(self.dtype)
        convs = iter(self.convs)
        for length in self.block_lengths:
            for _ in range(length):
                x = nnx.relu(next(convs)(x))
            x = layers.max_pool(x, 2, ceil_mode=self.native, kernels=self.kernels)
        if not self.native:
            x = layers.adaptive_avg_pool(x, (7, 7))
        x = x.reshape(x.shape[0], -1)
        x = self.dropout(nnx.relu(self.fc1(x)))
        return nnx.relu(self.fc2(x))
