"""Batch chunks and explicit patches shared by the CPU convolution paths: chunking of the
batch so working sets stay in cache, each kernel tap's strided slice, im2col patches, and the
two gradients built from them (``weight_gradient``, ``col2im_input_gradient``)."""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
from jax import lax

# Bytes of explicit patches per batch chunk of the weight gradient (weight_gradient), and of
# output per chunk of a tap-by-tap convolution (tapwise.valid_taps_conv): a few MB, in cache;
# measured best for ResNet-18's 28x28 to 4x4 stages (2 to 32 examples).
PATCH_CHUNK_BYTES = 4 * 1024 * 1024
# Bytes of input per batch chunk of the depthwise weight gradient: fits in a core's L2 cache.
CHUNK_BYTES = 512 * 1024
# Batch chunks written out as separate operations in evaluation, not a loop (map_chunks).
MAX_UNROLLED_CHUNKS = 8


def output_sizes(in_sizes, taps, strides, padding):
    """Output pixels per spatial axis of an undilated convolution."""
    return [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(in_sizes, taps, strides,
                                                                     padding)]


def chunk_size(batch: int, budget_bytes: int, bytes_per_example: int) -> int:
    """Examples per batch chunk: as many as fit in ``budget_bytes`` (at least 1), rounded down
    to a divisor of the batch."""
    size = max(1, min(batch, budget_bytes // bytes_per_example))
    while batch % size:
        size -= 1
    return size


def map_chunks(fn, x, size, unroll: bool):
    """fn applied to consecutive batch chunks of x of ``size`` examples, results concatenated.

    With ``unroll``, up to ``MAX_UNROLLED_CHUNKS`` chunks are written out as separate
    operations: a ``lax.scan``'s stacked output is zero-filled before the loop writes it, one
    more pass over memory. In training the loop was as fast or faster.
    """
    if unroll and x.shape[0] // size <= MAX_UNROLLED_CHUNKS:
        return jnp.concatenate([fn(x[i:i + size]) for i in range(0, x.shape[0], size)])
    _, out = lax.scan(lambda _, chunk: (None, fn(chunk)), None, in_chunks(x, size))
    return out.reshape(x.shape[0], *out.shape[2:])


def in_chunks(x, size):
    """x (B, ...) as (B // size, size, ...): the leading axis for ``lax.scan``."""
    return x.reshape(x.shape[0] // size, size, *x.shape[1:])


def im2col(x, taps, strides, padding):
    """Explicit patches (im2col): tap-major, then input channel, the order of a kernel's
    (*taps, C_in) rows."""
    return jnp.concatenate(list(tap_slices(x, taps, strides, padding)), axis=-1)


def tap_slices(x, taps, strides, padding):
    """For each kernel tap (row-major), the strided slice of the padded input it multiplies."""
    out_sizes = output_sizes(x.shape[1:-1], taps, strides, padding)
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    for offset in itertools.product(*(range(k) for k in taps)):
        limit = (xp.shape[0], *(o + s * (n - 1) + 1 for o, s, n in zip(offset, strides,
                                                                        out_sizes)),
                 xp.shape[-1])
        yield lax.slice(xp, (0, *offset, 0), limit, (1, *strides, 1))



def weight_gradient(x, g, w_shape, strides, padding, precision=None):
    """dL/dW of a channels-last convolution, accumulated over chunks of the batch: per chunk,
    the transposed output gradient times the chunk's explicit patches (im2col), a product
    whose operands stay in cache (about ``PATCH_CHUNK_BYTES`` of patches per chunk).

    x: (B, *spatial, C_in) input, g: (B, *out_spatial, C_out) output gradient; returns an array
    of ``w_shape`` (*taps, C_in, C_out) in float32. The transpose is explicit because XLA:CPU's
    product of two row-contracted operands (patches^T @ g) runs at half the rate.
    """
    taps, c_out = w_shape[:-2], w_shape[-1]
    batch, patch = x.shape[0], math.prod(w_shape[:-1])
    row_bytes = math.prod(g.shape[1:-1]) * patch * x.dtype.itemsize
    # At least as many bytes of patches per chunk as the float32 gradient that each chunk
    # adds to: fewer accumulations for wide layers.
    size = chunk_size(batch, max(PATCH_CHUNK_BYTES, patch * c_out * 4), row_bytes)

    def accumulate(total, chunk):
        x_chunk, g_chunk = chunk
        patches = im2col(x_chunk, taps, strides, padding)
        g_t = g_chunk.reshape(-1, c_out).T
        return total + jnp.matmul(g_t, patches.reshape(-1, patch), precision=precision,
                                  preferred_element_type=jnp.float32), None

    total, _ = lax.scan(accumulate, jnp.zeros((c_out, patch), jnp.float32),
                        (in_chunks(x, size), in_chunks(g, size)))
    return total.T.reshape(w_shape)



def col2im_input_gradient(g, w, x_shape, strides, padding, precision):
    """dL/dx of a channels-last convolution as the output gradient's patches (g times the
    transposed kernel) added back at each tap's offset (col2im).

    For few input channels the patches are small.
    """
    taps, c_in = w.shape[:-2], w.shape[-2]
    patches = jnp.einsum("...o,tco->...tc", g, w.reshape(-1, c_in, w.shape[-1]),
                         precision=precision, preferred_element_type=jnp.float32)
    padded = [n + lo + hi for n, (lo, hi) in zip(x_shape[1:-1], padding)]
    total = None
    for tap, offset in enumerate(itertools.product(*(range(k) for k in taps))):
        # The tap's patch values land at offset + stride * output position of the padded x.
        pads = [(o, n - o - s * (m - 1) - 1, s - 1)
                for o, n, s, m in zip(offset, padded, strides, g.shape[1:-1])]
        term = lax.pad(patches[..., tap, :], jnp.zeros((), jnp.float32),
                       [(0, 0, 0), *pads, (0, 0, 0)])
        total = term if total is None else total + term
    crop = tuple(slice(lo, n - hi) for n, (lo, hi) in zip(padded, padding))
    return total[(slice(None), *crop, slice(None))].astype(jnp.result_type(g, w))

