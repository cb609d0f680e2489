"""XLA's own operations, as Flax calls them: the kernels of every accelerator run."""

from __future__ import annotations

from collections.abc import Callable

import jax
from flax import nnx

conv_general_dilated = jax.lax.conv_general_dilated


def max_pool(x: jax.Array, window: int, stride: int,
             pads: tuple[tuple[int, int], ...]) -> jax.Array:
    """Max pool over the spatial axes of channels-last x; ``pads`` (low, high) per axis."""
    nd = x.ndim - 2
    return nnx.max_pool(x, (window,) * nd, strides=(stride,) * nd, padding=pads)


def batch_norm_activation(bn: nnx.BatchNorm, x: jax.Array,
                          activation: Callable[[jax.Array], jax.Array] | None) -> jax.Array:
    x = bn(x)
    return x if activation is None else activation(x)
