"""A small residual 1-D CNN for the 721-value LineAstroSpectra vectors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from astrospectra_jax.data.recipe import LINE_SIZE
from astrospectra_jax.models import layers
from astrospectra_jax.models.kernels import XLA, Kernels

# (output channels, stride) of the residual blocks after the stem.
CONV1D_BLOCKS = ((32, 1), (64, 2), (128, 2), (128, 2))


class ResBlock1D(nnx.Module):
    """conv k3 (stride) - BN - ReLU - conv k3 - BN, plus a shortcut (1x1 strided conv + BN when
    the shape changes), then ReLU: ResNet's basic block in one dimension."""

    def __init__(self, in_features: int, out_features: int, stride: int, *, kernels: Kernels,
                 dtype, param_dtype, rngs: nnx.Rngs):
        kw = dict(ndim=1, kernels=kernels, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.conv1 = layers.ConvBN(in_features, out_features, 3, stride, **kw)
        self.conv2 = layers.ConvBN(out_features, out_features, 3, activation=None, **kw)
        if stride != 1 or in_features != out_features:
            self.shortcut = layers.ConvBN(in_features, out_features, 1, stride, activation=None,
                                          **kw)
        else:
            self.shortcut = None

    def __call__(self, x: jax.Array) -> jax.Array:
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return nnx.relu(self.conv2(self.conv1(x)) + shortcut)


class Conv1D(nnx.Module):
    """Residual 1-D CNN over a line vector (B, 721) or (B, 721, 1); 225,955 parameters.

    =============================================================  ===========
    layer                                                           output
    =============================================================  ===========
    per-spectrum standardisation (zero mean, unit std, float32)     721x1
    stem: conv k7/2, 32, BN, ReLU                                   361x32
    residual block 32                                               361x32
    residual block 64, stride 2                                     181x64
    residual block 128, stride 2                                    91x128
    residual block 128, stride 2                                    46x128
    global average pool, dropout 0.2, dense num_classes             num_classes
    =============================================================  ===========

    The standardisation makes the net indifferent to the flux scale, which spans orders of
    magnitude between bright and faint objects; class information lives in the spectral
    shape (continuum slope, lines). Standardising input that is already standardised is a no-op.
    """

    def __init__(self, num_classes: int = 3, *, input_size: int = LINE_SIZE,
                 kernels: Kernels = XLA, dtype=jnp.float32, param_dtype=jnp.float32,
                 rngs: nnx.Rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        conv_kw = dict(kernels=kernels, **kw)
        self.input_size = input_size
        self.dtype = dtype
        self.stem = layers.ConvBN(1, 32, 7, 2, ndim=1, **conv_kw)
        blocks, in_features = [], 32
        for out_features, stride in CONV1D_BLOCKS:
            blocks.append(ResBlock1D(in_features, out_features, stride, **conv_kw))
            in_features = out_features
        self.blocks = nnx.Sequential(*blocks)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.fc = layers.linear(in_features, num_classes, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or x.shape[1:] != (self.input_size, 1):
            raise ValueError(f"conv1d expects line vectors of shape (B, {self.input_size}) or "
                             f"(B, {self.input_size}, 1); got {tuple(x.shape)}")
        x = x.astype(jnp.float32)
        mean = jnp.mean(x, axis=1, keepdims=True)
        std = jnp.std(x, axis=1, keepdims=True)
        x = ((x - mean) / jnp.where(std > 0, std, 1.0)).astype(self.dtype)  # any flux unit
        x = layers.global_avg_pool(self.blocks(self.stem(x)))
        return self.fc(self.dropout(x)).astype(jnp.float32)
