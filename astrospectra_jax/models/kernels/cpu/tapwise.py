"""Convolutions computed tap by tap: depthwise (one filter per channel), small output maps
(only the taps that meet the input) and single-channel stems, each with its own gradient."""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

from astrospectra_jax.models.kernels.cpu import chunks


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def depthwise_conv(x, w, strides, padding):
    """A depthwise convolution (one filter per channel) as a sum of shifted, scaled inputs,
    with a gradient that keeps only x and w: autodiff of the sum would store every tap's
    shifted copy of x, nine full-size arrays for a 3x3 filter.

    XLA:CPU's grouped convolution is many times slower.
    """
    return _depthwise_taps_conv(x, w, strides, padding)


def depthwise_conv_fwd(x, w, strides, padding):
    return _depthwise_taps_conv(x, w, strides, padding), (x, w)


def depthwise_conv_bwd(strides, padding, residuals, g):
    x, w = residuals
    taps = w.shape[:-2]
    # dx: a stride-1 depthwise convolution of g, dilated by the stride and re-padded (negative
    # padding crops), with the spatially flipped filter.
    pads = [(k - 1 - lo, n + lo - (m - 1) * s - 1, s - 1)
            for n, m, k, s, (lo, _) in zip(x.shape[1:-1], g.shape[1:-1], taps, strides, padding)]
    g_dilated = lax.pad(g, jnp.zeros((), g.dtype), [(0, 0, 0), *pads, (0, 0, 0)])
    flipped = lax.rev(w, tuple(range(len(taps))))
    dx = _depthwise_taps_conv(g_dilated, flipped, (1,) * len(taps), ((0, 0),) * len(taps))
    dw = _depthwise_weight_gradient(x, g, taps, strides, padding)
    return dx.astype(x.dtype), dw.reshape(w.shape).astype(w.dtype)


depthwise_conv.defvjp(depthwise_conv_fwd, depthwise_conv_bwd)


def _depthwise_weight_gradient(x, g, taps, strides, padding):
    """Per tap and channel, the product of the tap's window of x with g, summed over batch and
    space: a loop over chunks of the batch of about ``chunks.CHUNK_BYTES`` of x each.

    Over the whole batch at once XLA:CPU writes out every window before reducing it; chunks
    stay in cache.
    """
    batch, channels = x.shape[0], x.shape[-1]
    size = chunks.chunk_size(batch, chunks.CHUNK_BYTES,
                             math.prod(x.shape[1:]) * x.dtype.itemsize)
    axes = tuple(range(x.ndim - 1))

    def accumulate(total, chunk):
        x_chunk, g_chunk = chunk
        g_chunk = g_chunk.astype(jnp.float32)
        part = jnp.stack([jnp.sum(window.astype(jnp.float32) * g_chunk, axis=axes)
                          for window in chunks.tap_slices(x_chunk, taps, strides, padding)])
        return total + part, None

    total, _ = lax.scan(accumulate, jnp.zeros((math.prod(taps), channels), jnp.float32),
                        (chunks.in_chunks(x, size), chunks.in_chunks(g, size)))
    return total


def _depthwise_taps_conv(x, w, strides, padding):
    """Sum over the filter's taps of each tap's strided window of x times its per-channel
    weights; accumulates in float32."""
    taps = w.shape[:-2]
    kernel = w.reshape(-1, w.shape[-1])
    total = None
    for tap, window in enumerate(chunks.tap_slices(x, taps, strides, padding)):
        term = (window * kernel[tap]).astype(jnp.float32)
        total = term if total is None else total + term
    return total.astype(jnp.result_type(x, w))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def valid_taps_conv(x, w, strides, padding, precision):
    """A convolution as one channel product per kernel tap over only the outputs whose window
    puts that tap inside the input, summed: on small maps much of an im2col product multiplies
    padding (a 3x3 kernel with padding 1 on a 4x4 map: 44 of 144 tap positions; on 1x1, 8 of 9).

    Over chunks of the batch (``chunks.PATCH_CHUNK_BYTES`` of output each) so the per-tap
    products stay in cache.
    """
    return _valid_taps_forward(x, w, strides, padding, precision, unroll=True)


def _valid_taps_conv_fwd(x, w, strides, padding, precision):
    return _valid_taps_forward(x, w, strides, padding, precision, unroll=False), (x, w)


def _valid_taps_conv_bwd(strides, padding, precision, residuals, g):
    x, w = residuals
    size = chunks.chunk_size(x.shape[0], chunks.PATCH_CHUNK_BYTES,
                       max(math.prod(x.shape[1:]), math.prod(g.shape[1:])) * 4)

    windows = list(_valid_taps(x.shape[1:-1], w.shape[:-2], strides, padding))

    def chunk_gradients(dw, chunk):
        x_chunk, g_chunk = chunk
        dx, tap_grads = None, {}
        for tap, x_window, out_window, x_place in windows:
            g_part = g_chunk[(slice(None), *out_window)]
            part = jnp.einsum("...o,co->...c", g_part, w[tap], precision=precision,
                              preferred_element_type=jnp.float32)
            part = lax.pad(part, jnp.zeros((), part.dtype), [(0, 0, 0), *x_place, (0, 0, 0)])
            dx = part if dx is None else dx + part
            # (x^T) g with the transpose explicit, as in weight_gradient.
            x_part = x_chunk[(slice(None), *x_window)].reshape(-1, x.shape[-1])
            tap_grads[tap] = jnp.matmul(x_part.T, g_part.reshape(-1, g.shape[-1]),
                                        precision=precision, preferred_element_type=jnp.float32)
        return dw + _scatter_taps(tap_grads, w.shape), dx.astype(x.dtype)

    dw, dx = lax.scan(chunk_gradients, jnp.zeros(w.shape, jnp.float32),
                      (chunks.in_chunks(x, size), chunks.in_chunks(g, size)))
    return dx.reshape(x.shape), dw.astype(w.dtype)


valid_taps_conv.defvjp(_valid_taps_conv_fwd, _valid_taps_conv_bwd)


def _scatter_taps(blocks, w_shape):
    """The (C_in, C_out) blocks of the taps that meet the input, zeros elsewhere, as w_shape."""
    zeros = jnp.zeros(w_shape[-2:], jnp.float32)
    return jnp.stack([blocks.get(t, zeros) for t in itertools.product(
        *(range(k) for k in w_shape[:-2]))]).reshape(w_shape)


def _valid_taps_forward(x, w, strides, padding, precision, unroll):
    out_sizes = chunks.output_sizes(x.shape[1:-1], w.shape[:-2], strides, padding)
    size = chunks.chunk_size(x.shape[0], chunks.PATCH_CHUNK_BYTES,
                             math.prod(out_sizes) * w.shape[-1] * 4)
    windows = list(_valid_taps(x.shape[1:-1], w.shape[:-2], strides, padding))

    def chunk_conv(x_chunk):
        total = None
        for tap, x_window, out_window, _ in windows:
            part = jnp.einsum("...c,co->...o", x_chunk[(slice(None), *x_window)], w[tap],
                              precision=precision, preferred_element_type=jnp.float32)
            part = jnp.pad(part, [(0, 0), *((o.start, n - o.stop) for o, n in
                                            zip(out_window, out_sizes)), (0, 0)])
            total = part if total is None else total + part
        return total.astype(jnp.result_type(x, w))

    return chunks.map_chunks(chunk_conv, x, size, unroll)


def _valid_taps(in_sizes, taps, strides, padding):
    """For each kernel tap that meets the input: (tap, the strided input window it multiplies,
    the output window it contributes to, and the input window as lax.pad's (low, high,
    interior) that puts an array of the output window's size back in place)."""
    out_sizes = chunks.output_sizes(in_sizes, taps, strides, padding)
    ranges = []
    for n, k, s, (lo, _), m in zip(in_sizes, taps, strides, padding, out_sizes):
        axis = []
        for offset in range(k):
            # Outputs o with 0 <= o * s + offset - lo < n.
            first = max(0, -(-(lo - offset) // s))
            last = min(m - 1, (n - 1 + lo - offset) // s)
            if first > last:
                axis.append(None)
                continue
            start = first * s + offset - lo
            stop = start + s * (last - first) + 1
            axis.append((slice(start, stop, s), slice(first, last + 1),
                         (start, n - stop, s - 1)))
        ranges.append(axis)
    for tap in itertools.product(*(range(k) for k in taps)):
        windows = [axis[t] for axis, t in zip(ranges, tap)]
        if all(wnd is not None for wnd in windows):
            yield (tap, tuple(wnd[0] for wnd in windows), tuple(wnd[1] for wnd in windows),
                   [wnd[2] for wnd in windows])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def single_channel_conv(x, w, strides, padding, precision):
    """A convolution of single-channel input (a stem) as a sum over taps of the tap's shifted
    input times its row of weights, one elementwise loop that XLA fuses with what follows.

    XLA:CPU's convolution does poorly with one input channel. The sum runs over batch chunks
    (``chunks.map_chunks``): over the whole batch at once, XLA:CPU fused it with the following
    activation and pooling into a fusion that materialized every tap.
    """
    return _single_channel_taps_conv(x, w, strides, padding, unroll=True)


def _single_channel_conv_fwd(x, w, strides, padding, precision):
    return _single_channel_taps_conv(x, w, strides, padding, unroll=False), (x, w)


def _single_channel_taps_conv(x, w, strides, padding, unroll):
    out_sizes = chunks.output_sizes(x.shape[1:-1], w.shape[:-2], strides, padding)
    example_bytes = math.prod(out_sizes) * w.shape[-1] * jnp.result_type(x, w).itemsize
    # Examples per chunk for an unrolled loop.
    fewest = -(-x.shape[0] // chunks.MAX_UNROLLED_CHUNKS)
    size = chunks.chunk_size(x.shape[0], max(chunks.CHUNK_BYTES, fewest * example_bytes),
                             example_bytes)
    return chunks.map_chunks(lambda x_chunk: _depthwise_taps_conv(x_chunk, w, strides, padding), x,
                       size, unroll)


def _single_channel_conv_bwd(strides, padding, precision, residuals, g):
    x, w = residuals
    dx = chunks.col2im_input_gradient(g, w, x.shape, strides, padding, precision)
    return dx, chunks.weight_gradient(x, g, w.shape, strides, padding, precision).astype(w.dtype)


single_channel_conv.defvjp(_single_channel_conv_fwd, _single_channel_conv_bwd)

