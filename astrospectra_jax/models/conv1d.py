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


class Conv1D(layers.Classifier):
    """Residual 1-D CNN over a line vector (B, 721) or (B, 721, 1); 225,955 parameters.

    ==============================================  ===========
    layer                                            output
    ==============================================  ===========
    stem: conv k7/2, 32, BN, ReLU                    361x32
    residual block 32                                361x32
    residual block 64, stride 2                      181x64
    residual block 128, stride 2                     91x128
    residual block 128, stride 2                     46x128
    global average pool, dropout 0.2, dense          num_classes
    ==============================================  ===========

    The input is expected standardised per spectrum (zero mean, unit std), as
    ``training.input_pipeline.preprocess`` makes it for training, evaluation and prediction:
    that makes the net indifferent to the flux scale, which spans orders of magnitude between
    bright and faint objects; class information lives in the spectral shape (continuum slope,
    lines). Residual blocks: ``layers.ResidualBlock`` in one dimension.
    """

    dropout_name = "dropout"

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
            blocks.append(layers.ResidualBlock(in_features, out_features, stride, ndim=1,
                                               **conv_kw))
            in_features = out_features
        self.blocks = nnx.Sequential(*blocks)
        self.dropout = nnx.Dropout(0.2, rngs=rngs)
        self.fc = layers.linear(in_features, num_classes, **kw)

    def features(self, x: jax.Array) -> jax.Array:
        if x.ndim == 2:
            x = x[..., None]
        if x.ndim != 3 or x.shape[1:] != (self.input_size, 1):
            raise ValueError(f"conv1d expects line vectors of shape (B, {self.input_size}) or "
                             f"(B, {self.input_size}, 1); got {tuple(x.shape)}")
        return layers.global_avg_pool(self.blocks(self.stem(x.astype(self.dtype))))
