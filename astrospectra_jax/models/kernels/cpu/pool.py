"""Max pool: XLA's forward with the gradient of a running maximum."""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
from jax import lax

from astrospectra_jax.models.kernels import xla


def max_pool(x, window: int, stride: int, pads):
    """XLA's max pool forward (``reduce_window``, which fuses better than a running maximum),
    with the gradient of a running maximum over the window's strided slices: XLA:CPU's
    select-and-scatter is many times slower. Ties go to the window's first element either way.
    """
    return _max_pool(x, window, stride, pads)


def _running_max_pool(x, window, stride, pads):
    nd = x.ndim - 2
    padded = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    out_sizes = [(n - window) // stride + 1 for n in padded.shape[1:-1]]
    best = None
    for offset in itertools.product(range(window), repeat=nd):
        limit = (padded.shape[0], *(o + stride * (n - 1) + 1 for o, n in zip(offset, out_sizes)),
                 padded.shape[-1])
        tap = lax.slice(padded, (0, *offset, 0), limit, (1, *(stride,) * nd, 1))
        best = tap if best is None else jnp.where(tap > best, tap, best)
    return best


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, stride, pads):
    return xla.max_pool(x, window, stride, pads)


def _max_pool_fwd(x, window, stride, pads):
    return xla.max_pool(x, window, stride, pads), x


def _max_pool_bwd(window, stride, pads, x, g):
    _, vjp = jax.vjp(lambda x: _running_max_pool(x, window, stride, pads), x)
    return vjp(g)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)
