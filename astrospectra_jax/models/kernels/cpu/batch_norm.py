"""Training batch norm + activation with a gradient that stores only its input."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from astrospectra_jax.models.kernels import xla


def batch_norm_activation(x, scale, bias, epsilon, activation, dtype):
    """``xla.batch_norm_activation``'s values (batch statistics in float32, E[x^2] - E[x]^2
    variance; the activation applied in float32 before the cast to ``dtype``), with a gradient
    that reads x and the output gradient twice each and stores nothing but x: left to
    autodiff, XLA:CPU stores x - mean and the normalized x too and makes more passes over
    them, each at memory speed once past the cache. Returns (output, batch mean, batch
    variance); the caller keeps the running averages.
    """
    out, mean, var = _batch_norm_activation(x, scale, bias, epsilon, activation)
    return out.astype(dtype), mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm_activation(x, scale, bias, epsilon, activation):
    """(activation((x - mean) / sqrt(var + epsilon) * scale + bias), mean, var) over all axes
    but the last. The statistics are returned for the running averages and not differentiated.
    """
    return _batch_norm_activation_fwd(x, scale, bias, epsilon, activation)[0]


def _batch_norm_activation_fwd(x, scale, bias, epsilon, activation):
    mean, var = xla.batch_statistics(x)
    rstd = lax.rsqrt(var + epsilon)
    z = (x.astype(jnp.float32) - mean) * (rstd * scale) + bias
    return (xla.activate(z, activation), mean, var), (x, scale, bias, mean, rstd)


def _batch_norm_activation_bwd(epsilon, activation, residuals, cotangents):
    x, scale, bias, mean, rstd = residuals
    g = cotangents[0].astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    normalized = (x.astype(jnp.float32) - mean) * rstd
    if activation is not None:
        _, activation_vjp = jax.vjp(activation, normalized * scale + bias)
        (g,) = activation_vjp(g)
    count = math.prod(x.shape[:-1])
    d_bias = jnp.sum(g, axis=axes)
    d_scale = jnp.sum(g * normalized, axis=axes)
    dx = (scale * rstd) * (g - (d_bias + normalized * d_scale) / count)
    return dx.astype(x.dtype), d_scale.astype(scale.dtype), d_bias.astype(bias.dtype)


_batch_norm_activation.defvjp(_batch_norm_activation_fwd, _batch_norm_activation_bwd)
