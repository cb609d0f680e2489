"""Winograd's F(2x2, 3x3) (Lavin & Gray 2016) for stride-1, padding-1 3x3 convolutions on maps
of 14x14 and up: the training forward pass and input gradient of ``conv._conv``."""

from __future__ import annotations

import jax.numpy as jnp

from astrospectra_jax.models.kernels.cpu import chunks

# Maps at least this many pixels a side, and bytes of transformed input per batch chunk.
_WINOGRAD_MIN_MAP = 14
_CHUNK_WINOGRAD_BYTES = 4 * 1024 * 1024


# Winograd F(2x2, 3x3) (Lavin & Gray 2016): input tile transform B^T d B, kernel transform
# G g G^T, output transform A^T m A.
_WINOGRAD_BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_WINOGRAD_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_WINOGRAD_AT = ((1, 1, 1, 0), (0, 1, -1, -1))


def applies(x, w, strides, padding) -> bool:
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


def conv3x3(x, w, precision):
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
    size = chunks.chunk_size(batch, _CHUNK_WINOGRAD_BYTES,
                             16 * rows * cols * c_in * x.dtype.itemsize)

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

    return chunks.map_chunks(chunk_conv, x, size, unroll=False)

