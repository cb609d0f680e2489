"""Kernels that are faster than XLA's own on XLA:CPU: a drop-in ``lax.conv_general_dilated``,
a max pool, and ConvBN's training batch norm + activation (figures: benchmarks/README.md).

XLA:CPU's convolution gradients, grouped and 1x1 convolutions and select-and-scatter are slow,
and the CPU's memory is slow next to its caches, so these paths keep their working sets small:

- Weight gradient: per batch chunk, the transposed output gradient times explicit patches
  (``weight_gradient``).
- Stride-1 3x3 convolutions on maps of 14x14 and up, in training: Winograd's F(2x2, 3x3) for
  the forward pass and the input gradient (``_winograd_conv``); otherwise XLA's own.
- 1x1 convolutions: a matrix product over channels (``_pointwise_conv``).
- Output maps of at most 7x7: one channel product per kernel tap over the outputs it reaches
  (``_valid_taps_conv``), skipping the products with padding.
- Single-channel stems: a sum over the kernel's taps (``_single_channel_conv``).
- Input gradients of convolutions with few input channels: col2im
  (``_col2im_input_gradient``).
- Depthwise convolutions: a sum of shifted, scaled inputs with its own gradient
  (``_depthwise_conv``).
- Max pool: XLA's forward, the gradient of a running maximum over the window (``max_pool``).
- Training batch norm + activation with a gradient that stores only its input
  (``batch_norm_activation``).

Other convolutions (dilation, batch grouping, grouped but not depthwise, non-channels-last
layouts) go to ``lax.conv_general_dilated`` unchanged. Every path is correct on any backend;
``kernels.resolve("auto")`` picks them on CPU only.
"""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from astrospectra_jax.models.kernels import xla


# Bytes of explicit patches per batch chunk of the weight gradient (weight_gradient): a few
# MB, in cache; measured best for ResNet-18's 28x28 to 4x4 stages (2 to 32 examples).
_PATCH_CHUNK_BYTES = 4 * 1024 * 1024
# Output maps this small (pixels a side) are convolved tap by tap (_valid_taps_conv).
_SMALL_MAP = 7
# Single-channel stems with at most this many kernel taps go to _single_channel_conv.
_MAX_STEM_TAPS = 25
# Convolutions with fewer input channels than this take their input gradient as explicit
# patches of the output gradient (_col2im_input_gradient).
_MAX_COL2IM_IN_FEATURES = 16
# Winograd 3x3 convolutions (_winograd_conv): maps at least this many pixels a side, and
# bytes of transformed input per batch chunk.
_WINOGRAD_MIN_MAP = 14
_CHUNK_WINOGRAD_BYTES = 4 * 1024 * 1024
# Bytes of input per batch chunk of the depthwise weight gradient: fits in a core's L2 cache.
_CHUNK_BYTES = 512 * 1024
# Batch chunks written out as separate operations in evaluation, not a loop (_map_chunks).
_MAX_UNROLLED_CHUNKS = 8


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None,
                         **kwargs):
    """``lax.conv_general_dilated`` (same signature, as ``nnx.Conv`` calls it)."""
    spatial = lhs.ndim - 2
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], window_strides, padding)
    simple = (_is_channels_last(dimension_numbers, lhs.ndim)
              and all(d == 1 for d in (lhs_dilation or (1,) * spatial))
              and all(d == 1 for d in (rhs_dilation or (1,) * spatial))
              and batch_group_count == 1
              and preferred_element_type is None and kwargs.get("out_sharding") is None
              and all(lo >= 0 and hi >= 0 for lo, hi in padding))
    strides, padding = tuple(window_strides), tuple(tuple(p) for p in padding)
    if (simple and feature_group_count > 1 and feature_group_count == lhs.shape[-1]
            and rhs.shape[-2:] == (1, feature_group_count)):
        return _depthwise_conv(lhs, rhs, strides, padding)
    if simple and feature_group_count == 1:
        if all(k == 1 for k in rhs.shape[:-2]) and all(p == (0, 0) for p in padding):
            return _pointwise_conv(lhs, rhs, strides, precision)
        if max(_out_sizes(lhs.shape[1:-1], rhs.shape[:-2], strides, padding)) <= _SMALL_MAP:
            return _valid_taps_conv(lhs, rhs, strides, padding, precision)
        if lhs.shape[-1] == 1 and math.prod(rhs.shape[:-2]) <= _MAX_STEM_TAPS:
            return _single_channel_conv(lhs, rhs, strides, padding, precision)
        return _conv(lhs, rhs, strides, padding, precision)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type, **kwargs)


def _out_sizes(in_sizes, taps, strides, padding):
    """Output pixels per spatial axis of an undilated convolution."""
    return [(n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(in_sizes, taps, strides,
                                                                     padding)]


def _chunk_size(batch: int, budget_bytes: int, bytes_per_example: int) -> int:
    """Examples per batch chunk: as many as fit in ``budget_bytes`` (at least 1), rounded down
    to a divisor of the batch."""
    size = max(1, min(batch, budget_bytes // bytes_per_example))
    while batch % size:
        size -= 1
    return size


def _map_chunks(fn, x, size, unroll: bool):
    """fn applied to consecutive batch chunks of x of ``size`` examples, results concatenated.

    With ``unroll``, up to ``_MAX_UNROLLED_CHUNKS`` chunks are written out as separate
    operations: a ``lax.scan``'s stacked output is zero-filled before the loop writes it, one
    more pass over memory. In training the loop was as fast or faster.
    """
    if unroll and x.shape[0] // size <= _MAX_UNROLLED_CHUNKS:
        return jnp.concatenate([fn(x[i:i + size]) for i in range(0, x.shape[0], size)])
    _, out = lax.scan(lambda _, chunk: (None, fn(chunk)), None, _in_chunks(x, size))
    return out.reshape(x.shape[0], *out.shape[2:])


def _in_chunks(x, size):
    """x (B, ...) as (B // size, size, ...): the leading axis for ``lax.scan``."""
    return x.reshape(x.shape[0] // size, size, *x.shape[1:])


def _patches(x, taps, strides, padding):
    """Explicit patches (im2col): tap-major, then input channel, the order of a kernel's
    (*taps, C_in) rows."""
    return jnp.concatenate(list(_tap_slices(x, taps, strides, padding)), axis=-1)


def _tap_slices(x, taps, strides, padding):
    """For each kernel tap (row-major), the strided slice of the padded input it multiplies."""
    out_sizes = _out_sizes(x.shape[1:-1], taps, strides, padding)
    xp = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    for offset in itertools.product(*(range(k) for k in taps)):
        limit = (xp.shape[0], *(o + s * (n - 1) + 1 for o, s, n in zip(offset, strides,
                                                                        out_sizes)),
                 xp.shape[-1])
        yield lax.slice(xp, (0, *offset, 0), limit, (1, *strides, 1))


def _pointwise_conv(x, w, strides, precision):
    """A 1x1 convolution as a matrix product over channels (after the stride's subsampling).

    XLA:CPU's convolution is slow for these (MobileNetV2's projections).
    """
    if any(s > 1 for s in strides):
        x = lax.slice(x, (0,) * x.ndim, x.shape, (1, *strides, 1))
    return _channel_matmul(x, w.reshape(w.shape[-2:]), precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _channel_matmul(x, w, precision):
    """x (..., C_in) times w (C_in, C_out), with the weight gradient as one product of the
    flattened input's transpose with the flattened output gradient.

    Left to autodiff, XLA:CPU transposes the whole output gradient in memory first and then
    takes a slower product.
    """
    return jnp.einsum("...c,co->...o", x, w, precision=precision)


def _channel_matmul_fwd(x, w, precision):
    return _channel_matmul(x, w, precision), (x, w)


def _channel_matmul_bwd(precision, residuals, g):
    x, w = residuals
    dx = jnp.einsum("...o,co->...c", g, w, precision=precision)
    dw = jnp.matmul(x.reshape(-1, x.shape[-1]).T, g.reshape(-1, g.shape[-1]),
                    precision=precision, preferred_element_type=jnp.float32)
    return dx.astype(x.dtype), dw.astype(w.dtype)


_channel_matmul.defvjp(_channel_matmul_fwd, _channel_matmul_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _depthwise_conv(x, w, strides, padding):
    """A depthwise convolution (one filter per channel) as a sum of shifted, scaled inputs,
    with a gradient that keeps only x and w: autodiff of the sum would store every tap's
    shifted copy of x, nine full-size arrays for a 3x3 filter.

    XLA:CPU's grouped convolution is many times slower.
    """
    return _depthwise_taps_conv(x, w, strides, padding)


def _depthwise_conv_fwd(x, w, strides, padding):
    return _depthwise_taps_conv(x, w, strides, padding), (x, w)


def _depthwise_conv_bwd(strides, padding, residuals, g):
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


_depthwise_conv.defvjp(_depthwise_conv_fwd, _depthwise_conv_bwd)


def _depthwise_weight_gradient(x, g, taps, strides, padding):
    """Per tap and channel, the product of the tap's window of x with g, summed over batch and
    space: a loop over chunks of the batch of about ``_CHUNK_BYTES`` of x each.

    Over the whole batch at once XLA:CPU writes out every window before reducing it; chunks
    stay in cache.
    """
    batch, channels = x.shape[0], x.shape[-1]
    size = _chunk_size(batch, _CHUNK_BYTES, math.prod(x.shape[1:]) * x.dtype.itemsize)
    axes = tuple(range(x.ndim - 1))

    def accumulate(total, chunk):
        x_chunk, g_chunk = chunk
        g_chunk = g_chunk.astype(jnp.float32)
        part = jnp.stack([jnp.sum(window.astype(jnp.float32) * g_chunk, axis=axes)
                          for window in _tap_slices(x_chunk, taps, strides, padding)])
        return total + part, None

    total, _ = lax.scan(accumulate, jnp.zeros((math.prod(taps), channels), jnp.float32),
                        (_in_chunks(x, size), _in_chunks(g, size)))
    return total


def _depthwise_taps_conv(x, w, strides, padding):
    """Sum over the filter's taps of each tap's strided window of x times its per-channel
    weights; accumulates in float32."""
    taps = w.shape[:-2]
    kernel = w.reshape(-1, w.shape[-1])
    total = None
    for tap, window in enumerate(_tap_slices(x, taps, strides, padding)):
        term = (window * kernel[tap]).astype(jnp.float32)
        total = term if total is None else total + term
    return total.astype(jnp.result_type(x, w))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _valid_taps_conv(x, w, strides, padding, precision):
    """A convolution as one channel product per kernel tap over only the outputs whose window
    puts that tap inside the input, summed: on small maps much of an im2col product multiplies
    padding (a 3x3 kernel with padding 1 on a 4x4 map: 44 of 144 tap positions; on 1x1, 8 of 9).

    Over chunks of the batch (``_PATCH_CHUNK_BYTES`` of output each) so the per-tap products
    stay in cache.
    """
    return _valid_taps_forward(x, w, strides, padding, precision, unroll=True)


def _valid_taps_conv_fwd(x, w, strides, padding, precision):
    return _valid_taps_forward(x, w, strides, padding, precision, unroll=False), (x, w)


def _valid_taps_conv_bwd(strides, padding, precision, residuals, g):
    x, w = residuals
    size = _chunk_size(x.shape[0], _PATCH_CHUNK_BYTES,
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
                      (_in_chunks(x, size), _in_chunks(g, size)))
    return dx.reshape(x.shape), dw.astype(w.dtype)


_valid_taps_conv.defvjp(_valid_taps_conv_fwd, _valid_taps_conv_bwd)


def _scatter_taps(blocks, w_shape):
    """The (C_in, C_out) blocks of the taps that meet the input, zeros elsewhere, as w_shape."""
    zeros = jnp.zeros(w_shape[-2:], jnp.float32)
    return jnp.stack([blocks.get(t, zeros) for t in itertools.product(
        *(range(k) for k in w_shape[:-2]))]).reshape(w_shape)


def _valid_taps_forward(x, w, strides, padding, precision, unroll):
    out_sizes = _out_sizes(x.shape[1:-1], w.shape[:-2], strides, padding)
    size = _chunk_size(x.shape[0], _PATCH_CHUNK_BYTES, math.prod(out_sizes) * w.shape[-1] * 4)
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

    return _map_chunks(chunk_conv, x, size, unroll)


def _valid_taps(in_sizes, taps, strides, padding):
    """For each kernel tap that meets the input: (tap, the strided input window it multiplies,
    the output window it contributes to, and the input window as lax.pad's (low, high,
    interior) that puts an array of the output window's size back in place)."""
    out_sizes = _out_sizes(in_sizes, taps, strides, padding)
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
def _single_channel_conv(x, w, strides, padding, precision):
    """A convolution of single-channel input (a stem) as a sum over taps of the tap's shifted
    input times its row of weights, one elementwise loop that XLA fuses with what follows.

    XLA:CPU's convolution does poorly with one input channel. The sum runs over batch chunks
    (``_map_chunks``): over the whole batch at once, XLA:CPU fused it with the following
    activation and pooling into a fusion that materialized every tap.
    """
    return _single_channel_taps_conv(x, w, strides, padding, unroll=True)


def _single_channel_conv_fwd(x, w, strides, padding, precision):
    return _single_channel_taps_conv(x, w, strides, padding, unroll=False), (x, w)


def _single_channel_taps_conv(x, w, strides, padding, unroll):
    out_sizes = _out_sizes(x.shape[1:-1], w.shape[:-2], strides, padding)
    example_bytes = math.prod(out_sizes) * w.shape[-1] * jnp.result_type(x, w).itemsize
    fewest = -(-x.shape[0] // _MAX_UNROLLED_CHUNKS)  # examples per chunk for an unrolled loop
    size = _chunk_size(x.shape[0], max(_CHUNK_BYTES, fewest * example_bytes), example_bytes)
    return _map_chunks(lambda x_chunk: _depthwise_taps_conv(x_chunk, w, strides, padding), x,
                       size, unroll)


def _single_channel_conv_bwd(strides, padding, precision, residuals, g):
    x, w = residuals
    dx = _col2im_input_gradient(g, w, x.shape, strides, padding, precision)
    return dx, weight_gradient(x, g, w.shape, strides, padding, precision).astype(w.dtype)


_single_channel_conv.defvjp(_single_channel_conv_fwd, _single_channel_conv_bwd)


def _col2im_input_gradient(g, w, x_shape, strides, padding, precision):
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


def _is_channels_last(dimension_numbers, ndim: int) -> bool:
    """NHWC / HWIO / NHWC (or the 1-D and 3-D analogues): what ``nnx.Conv`` passes."""
    if dimension_numbers is None:
        return False
    dn = lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers)
    spatial = tuple(range(1, ndim - 1))
    return (dn.lhs_spec == (0, ndim - 1, *spatial)
            and dn.rhs_spec == (ndim - 1, ndim - 2, *range(ndim - 2))
            and dn.out_spec == (0, ndim - 1, *spatial))


def _dimension_numbers(ndim: int) -> lax.ConvDimensionNumbers:
    spatial = tuple(range(1, ndim - 1))
    return lax.ConvDimensionNumbers((0, ndim - 1, *spatial), (ndim - 1, ndim - 2,
                                                              *range(ndim - 2)),
                                    (0, ndim - 1, *spatial))


def _lax_conv(x, w, strides, padding, precision):
    return lax.conv_general_dilated(x, w, strides, padding,
                                    dimension_numbers=_dimension_numbers(x.ndim),
                                    precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, padding, precision):
    # Not differentiated (evaluation): XLA's own, which fuses the preceding batch norm and
    # activation into the convolution; Winograd here cost SimpleCNN2's evaluation 13-25%.
    return _lax_conv(x, w, strides, padding, precision)


def _forward_conv(x, w, strides, padding, precision):
    if _winograd_applies(x, w, strides, padding):
        return _winograd_conv(x, w, precision)
    return _lax_conv(x, w, strides, padding, precision)


def _conv_fwd(x, w, strides, padding, precision):
    # Differentiated (training): the input is stored for the backward pass anyway, and
    # Winograd's forward pays off here.
    return _forward_conv(x, w, strides, padding, precision), (x, w)


def _conv_bwd(strides, padding, precision, residuals, g):
    x, w = residuals
    if _winograd_applies(x, w, strides, padding):
        # A stride-1, padding-1 3x3 convolution's input gradient is one too, with the kernel
        # flipped and its channel axes swapped.
        dx = _winograd_conv(g, jnp.swapaxes(w[::-1, ::-1], 2, 3), precision)
    elif x.shape[-1] < _MAX_COL2IM_IN_FEATURES:
        dx = _col2im_input_gradient(g, w, x.shape, strides, padding, precision)
    else:
        _, input_vjp = jax.vjp(lambda x: _lax_conv(x, w, strides, padding, precision), x)
        (dx,) = input_vjp(g)
    return dx, weight_gradient(x, g, w.shape, strides, padding, precision).astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


# Winograd F(2x2, 3x3) (Lavin & Gray 2016): input tile transform B^T d B, kernel transform
# G g G^T, output transform A^T m A.
_WINOGRAD_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_WINOGRAD_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_WINOGRAD_AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def _winograd_applies(x, w, strides, padding) -> bool:
    return (x.ndim == 4 and w.shape[:2] == (3, 3) and tuple(strides) == (1, 1)
            and tuple(map(tuple, padding)) == ((1, 1), (1, 1))
            and min(x.shape[1:3]) >= _WINOGRAD_MIN_MAP)


def _signed_sum(coefficients, terms):
    """sum(c * t) over the nonzero coefficients c (exact for the transforms' 0, +-1, +-0.5)."""
    total = None
    for c, term in zip(coefficients, terms):
        if c == 0:
            continue
        term = term if c == 1 else (-term if c == -1 else c * term)
        total = term if total is None else total + term
    return total


def _winograd_conv(x, w, precision):
    """A stride-1 3x3 convolution with padding 1 as Winograd's F(2x2, 3x3), over chunks of the
    batch of about ``_CHUNK_WINOGRAD_BYTES`` of transformed input each.

    Each 2x2 output tile takes 16 channel products instead of 36. Relative error ~1e-6 in
    float32.
    """
    batch, height, width, c_in = x.shape
    c_out = w.shape[-1]
    rows, cols = -(-height // 2), -(-width // 2)  # output tiles (odd sizes padded, cropped)
    # G w G^T, elementwise in float32 (a 4x3 matrix on each side of the 3x3 taps).
    taps = w.astype(jnp.float32)
    half = [[_signed_sum(_WINOGRAD_G[u], [taps[a, b] for a in range(3)]) for b in range(3)]
            for u in range(4)]
    transformed = jnp.stack([_signed_sum(_WINOGRAD_G[t], half[u])
                             for u in range(4) for t in range(4)]).astype(w.dtype)
    size = _chunk_size(batch, _CHUNK_WINOGRAD_BYTES, 16 * rows * cols * c_in * x.dtype.itemsize)

    def chunk_conv(x_chunk):
        n = x_chunk.shape[0]
        xp = jnp.pad(x_chunk, ((0, 0), (1, 1 + 2 * rows - height), (1, 1 + 2 * cols - width),
                               (0, 0)))
        d = [[xp[:, a:a + 2 * rows:2, b:b + 2 * cols:2, :] for b in range(4)] for a in range(4)]
        bt = _WINOGRAD_BT
        half = [[_signed_sum(bt[u], [d[a][b] for a in range(4)]) for b in range(4)]
                for u in range(4)]
        v = jnp.stack([_signed_sum(bt[t], half[u]) for u in range(4) for t in range(4)])
        m = jnp.einsum("kpc,kco->kpo", v.reshape(16, -1, c_in), transformed,
                       precision=precision, preferred_element_type=jnp.float32)
        m = m.reshape(4, 4, n, rows, cols, c_out)
        at = _WINOGRAD_AT
        half = [[_signed_sum(at[i], [m[a, b] for a in range(4)]) for b in range(4)]
                for i in range(2)]
        y = jnp.stack([jnp.stack([_signed_sum(at[j], half[i]) for j in range(2)], axis=3)
                       for i in range(2)], axis=2)  # (n, rows, 2, cols, 2, C_out)
        y = y.reshape(n, 2 * rows, 2 * cols, c_out)[:, :height, :width]
        return y.astype(jnp.result_type(x, w))

    return _map_chunks(chunk_conv, x, size, unroll=False)


def weight_gradient(x, g, w_shape, strides, padding, precision=None):
    """dL/dW of a channels-last convolution, accumulated over chunks of the batch: per chunk,
    the transposed output gradient times the chunk's explicit patches (im2col), a product
    whose operands stay in cache (about ``_PATCH_CHUNK_BYTES`` of patches per chunk).

    x: (B, *spatial, C_in) input, g: (B, *out_spatial, C_out) output gradient; returns an array
    of ``w_shape`` (*taps, C_in, C_out) in float32. The transpose is explicit because XLA:CPU's
    product of two row-contracted operands (patches^T @ g) runs at half the rate.
    """
    taps, c_out = w_shape[:-2], w_shape[-1]
    batch, patch = x.shape[0], math.prod(w_shape[:-1])
    row_bytes = math.prod(g.shape[1:-1]) * patch * x.dtype.itemsize
    # At least as many bytes of patches per chunk as the float32 gradient that each chunk
    # adds to: fewer accumulations for wide layers.
    size = _chunk_size(batch, max(_PATCH_CHUNK_BYTES, patch * c_out * 4), row_bytes)

    def accumulate(total, chunk):
        x_chunk, g_chunk = chunk
        patches = _patches(x_chunk, taps, strides, padding)
        g_t = g_chunk.reshape(-1, c_out).T
        return total + jnp.matmul(g_t, patches.reshape(-1, patch), precision=precision,
                                  preferred_element_type=jnp.float32), None

    total, _ = lax.scan(accumulate, jnp.zeros((c_out, patch), jnp.float32),
                        (_in_chunks(x, size), _in_chunks(g, size)))
    return total.T.reshape(w_shape)


# ----------------------------------------------------------------------------- max pool

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


# ----------------------------------------------------------------------------- batch norm

def batch_norm_activation(bn: nnx.BatchNorm, x, activation):
    """``activation(bn(x))``. In training mode computed as nnx.BatchNorm does (batch statistics
    in float32, E[x^2] - E[x]^2 variance, the same running-average update), with a gradient
    that reads x and the output gradient twice each and stores nothing but x: left to
    autodiff, XLA:CPU stores x - mean and the normalized x too and makes more passes over
    them, each at memory speed once past the cache. Evaluation mode is XLA's.
    """
    if bn.use_running_average:
        return xla.batch_norm_activation(bn, x, activation)
    out, mean, var = _batch_norm_activation(x, bn.scale[...], bn.bias[...], bn.epsilon,
                                            activation)
    bn.mean[...] = lax.stop_gradient(bn.momentum * bn.mean[...] + (1 - bn.momentum) * mean)
    bn.var[...] = lax.stop_gradient(bn.momentum * bn.var[...] + (1 - bn.momentum) * var)
    return out.astype(bn.dtype or x.dtype)


def _statistics(x):
    axes = tuple(range(x.ndim - 1))
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=axes)
    var = jnp.maximum(jnp.mean(x * x, axis=axes) - mean * mean, 0.0)
    return mean, var


def _activate(z, activation):
    return z if activation is None else activation(z)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _batch_norm_activation(x, scale, bias, epsilon, activation):
    """(activation((x - mean) / sqrt(var + epsilon) * scale + bias), mean, var) over all axes
    but the last. The statistics are returned for the running averages and not differentiated.
    """
    return _batch_norm_activation_fwd(x, scale, bias, epsilon, activation)[0]


def _batch_norm_activation_fwd(x, scale, bias, epsilon, activation):
    mean, var = _statistics(x)
    rstd = lax.rsqrt(var + epsilon)
    z = (x.astype(jnp.float32) - mean) * (rstd * scale) + bias
    return (_activate(z, activation), mean, var), (x, scale, bias, mean, rstd)


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
