"""The convolution entry point (``lax.conv_general_dilated``'s signature), dispatching to the
CPU paths, plus the two it owns: 1x1 convolutions as a channel product and a general
convolution with Winograd, col2im and chunked weight gradients."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from astrospectra_jax.models.kernels.cpu import chunks, tapwise, winograd

# Output maps this small (pixels a side) are convolved tap by tap (tapwise.valid_taps_conv).
_SMALL_MAP = 7
# Single-channel stems with at most this many kernel taps go to tapwise.single_channel_conv.
_MAX_STEM_TAPS = 25
# Convolutions with fewer input channels than this take their input gradient as explicit
# patches of the output gradient (chunks.col2im_input_gradient).
_MAX_COL2IM_IN_FEATURES = 16


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
        return tapwise.depthwise_conv(lhs, rhs, strides, padding)
    if simple and feature_group_count == 1:
        if all(k == 1 for k in rhs.shape[:-2]) and all(p == (0, 0) for p in padding):
            return _pointwise_conv(lhs, rhs, strides, precision)
        out_sizes = chunks.output_sizes(lhs.shape[1:-1], rhs.shape[:-2], strides, padding)
        if max(out_sizes) <= _SMALL_MAP:
            return tapwise.valid_taps_conv(lhs, rhs, strides, padding, precision)
        if lhs.shape[-1] == 1 and math.prod(rhs.shape[:-2]) <= _MAX_STEM_TAPS:
            return tapwise.single_channel_conv(lhs, rhs, strides, padding, precision)
        return _conv(lhs, rhs, strides, padding, precision)
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision=precision,
        preferred_element_type=preferred_element_type, **kwargs)


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
    if winograd.applies(x, w, strides, padding):
        return winograd.conv3x3(x, w, precision)
    return _lax_conv(x, w, strides, padding, precision)


def _conv_fwd(x, w, strides, padding, precision):
    # Differentiated (training): the input is stored for the backward pass anyway, and
    # Winograd's forward pays off here.
    return _forward_conv(x, w, strides, padding, precision), (x, w)


def _conv_bwd(strides, padding, precision, residuals, g):
    x, w = residuals
    if winograd.applies(x, w, strides, padding):
        # A stride-1, padding-1 3x3 convolution's input gradient is one too, with the kernel
        # flipped and its channel axes swapped.
        dx = winograd.conv3x3(g, jnp.swapaxes(w[::-1, ::-1], 2, 3), precision)
    elif x.shape[-1] < _MAX_COL2IM_IN_FEATURES:
        dx = chunks.col2im_input_gradient(g, w, x.shape, strides, padding, precision)
    else:
        _, input_vjp = jax.vjp(lambda x: _lax_conv(x, w, strides, padding, precision), x)
        (dx,) = input_vjp(g)
    return dx, chunks.weight_gradient(x, g, w.shape, strides, padding, precision).astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)

