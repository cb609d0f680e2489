"""XLA's own operations, as Flax calls them: the kernels of every accelerator run."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

conv_general_dilated = jax.lax.conv_general_dilated


def max_pool(x: jax.Array, window: int, stride: int,
             pads: tuple[tuple[int, int], ...]) -> jax.Array:
    """Max pool over the spatial axes of channels-last x; ``pads`` (low, high) per axis."""
    nd = x.ndim - 2
    return nnx.max_pool(x, (window,) * nd, strides=(stride,) * nd, padding=pads)


def batch_norm_activation(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float,
                          activation: Callable[[jax.Array], jax.Array] | None, dtype
                          ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode batch norm over all axes but the last, then ``activation``: returns
    (output in ``dtype``, batch mean, batch variance), the statistics in float32 for the
    caller's running averages. The operations of nnx.BatchNorm in training mode (x, scale and
    bias cast to ``dtype`` first), so values and gradients are nnx's."""
    x, scale, bias = (jnp.asarray(a, dtype) for a in (x, scale, bias))
    mean, var = batch_statistics(x)
    y = (x - mean) * (lax.rsqrt(var + epsilon) * scale) + bias
    return activate(jnp.asarray(y, dtype), activation), mean, var


def batch_statistics(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean, variance) over all axes but the last, in float32: E[x^2] - E[x]^2 clipped at zero,
    as nnx.BatchNorm's default (``use_fast_variance``) computes them."""
    axes = tuple(range(x.ndim - 1))
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    mean = jnp.mean(x, axis=axes)
    var = jnp.maximum(jnp.mean(x * x, axis=axes) - mean * mean, 0.0)
    return mean, var


def activate(x: jax.Array, activation: Callable[[jax.Array], jax.Array] | None) -> jax.Array:
    return x if activation is None else activation(x)
