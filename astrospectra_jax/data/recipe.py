"""The spectrum recipe: observed spectrum -> 3601-point grid -> line vector / 28x28 image.

The AstroSpectra-MNIST authors did not publish their preprocessing; this recipe is ours.
Every step is a pure numpy function that works on one spectrum or a batch (leading axes).

1. ``to_grid``: linear interpolation onto ``GRID`` (3700-9100 A, 1.5 A steps, observed
   frame); bad pixels (zero inverse variance, non-zero or-mask, non-finite) are bridged by
   interpolation between good neighbours. Fewer than ``MIN_GOOD_FRACTION`` of the grid
   covered by good pixels is rejected.
2. ``line_vector``: centred width-5 box filter (edge padded), every 5th sample from 0: 721 values.
3. ``image``: mean over 784 equal bins (edges ``linspace(0, 3601, 785)``), min-max scaled to
   0..255 uint8, row-major 28x28.
"""

from __future__ import annotations

import numpy as np

GRID_START = 3700.0
GRID_STEP = 1.5
GRID_SIZE = 3601
GRID = GRID_START + GRID_STEP * np.arange(GRID_SIZE)  # 3700.0 ... 9100.0 Angstrom

LINE_FILTER_WIDTH = 5
LINE_SIZE = 721
IMAGE_SIDE = 28
IMAGE_BINS = IMAGE_SIDE * IMAGE_SIDE

# A spectrum is rejected when good pixels cover less than this fraction of the grid. LAMOST LRS
# covers ~3690-9100 A, so a healthy spectrum covers ~100%; below half, the image would be
# mostly interpolated or edge-extended values.
MIN_GOOD_FRACTION = 0.5


class BadSpectrumError(ValueError):
    """A spectrum that cannot go through the recipe (too few good pixels, bad shapes)."""


def good_pixels(flux, ivar=None, ormask=None):
    """Boolean mask of usable pixels: finite flux, positive inverse variance, zero or-mask."""
    flux = np.asarray(flux)
    good = np.isfinite(flux)
    if ivar is not None:
        ivar = np.asarray(ivar)
        good &= np.isfinite(ivar) & (ivar > 0)
    if ormask is not None:
        good &= np.asarray(ormask) == 0
    return good


def grid_coverage(wavelength, good) -> float:
    """Fraction of ``GRID`` lying between good pixels no further apart than 50 grid steps."""
    wl = np.asarray(wavelength, dtype=np.float64)[np.asarray(good, dtype=bool)]
    if wl.size < 2:
        return 0.0
    wl = np.sort(wl)
    # A grid point counts as covered when the good pixels around it are close: long runs of
    # bad pixels (or the region outside the observed range) do not count.
    idx = np.searchsorted(wl, GRID)
    inside = (idx > 0) & (idx < wl.size)
    lo = wl[np.clip(idx - 1, 0, wl.size - 1)]
    hi = wl[np.clip(idx, 0, wl.size - 1)]
    covered = inside & ((hi - lo) <= 50 * GRID_STEP) | np.isin(GRID, wl)
    return float(covered.mean())


def to_grid(wavelength, flux, ivar=None, ormask=None, *, name: str = "spectrum",
            min_good_fraction: float = MIN_GOOD_FRACTION) -> np.ndarray:
    """Resample one spectrum onto ``GRID`` (float32, shape (3601,)).

    Bad pixels are dropped and the gaps bridged linearly; beyond the first/last good pixel
    the edge value is held. Raises ``BadSpectrumError`` naming ``name`` when good pixels
    cover less than ``min_good_fraction`` of the grid.
    """
    wavelength = np.asarray(wavelength, dtype=np.float64)
    flux = np.asarray(flux, dtype=np.float64)
    if wavelength.ndim != 1 or wavelength.shape != flux.shape:
        raise BadSpectrumError(
            f"{name}: wavelength {wavelength.shape} and flux {flux.shape} must be equal 1-D arrays")
    good = good_pixels(flux, ivar, ormask) & np.isfinite(wavelength)
    coverage = grid_coverage(wavelength, good)
    if coverage < min_good_fraction:
        raise BadSpectrumError(
            f"{name}: good pixels cover {coverage:.0%} of the 3700-9100 A grid "
            f"(at least {min_good_fraction:.0%} needed)")
    order = np.argsort(wavelength[good], kind="stable")
    return np.interp(GRID, wavelength[good][order], flux[good][order]).astype(np.float32)


def line_vector(flux_on_grid) -> np.ndarray:
    """(..., 3601) -> (..., 721) float32: centred width-5 mean filter, then every 5th sample."""
    flux = np.asarray(flux_on_grid, dtype=np.float64)
    if flux.shape[-1] != GRID_SIZE:
        raise BadSpectrumError(f"line_vector needs {GRID_SIZE} grid points, got {flux.shape[-1]}")
    half = LINE_FILTER_WIDTH // 2
    pad = [(0, 0)] * (flux.ndim - 1) + [(half, half)]
    padded = np.pad(flux, pad, mode="edge")
    csum = np.cumsum(padded, axis=-1)
    csum = np.concatenate([np.zeros_like(csum[..., :1]), csum], axis=-1)
    smoothed = (csum[..., LINE_FILTER_WIDTH:] - csum[..., :-LINE_FILTER_WIDTH]) / LINE_FILTER_WIDTH
    return smoothed[..., ::LINE_FILTER_WIDTH].astype(np.float32)


# Bin i holds grid indices j with EDGES[i] <= j < EDGES[i+1]: 4 or 5 pixels each.
_IMAGE_EDGES = np.linspace(0, GRID_SIZE, IMAGE_BINS + 1)
_IMAGE_STARTS = np.ceil(_IMAGE_EDGES[:-1]).astype(np.int64)
_IMAGE_COUNTS = np.diff(np.append(_IMAGE_STARTS, GRID_SIZE))


def binned_means(flux_on_grid) -> np.ndarray:
    """(..., 3601) -> (..., 784): mean over the image's 784 equal bins."""
    flux = np.asarray(flux_on_grid, dtype=np.float64)
    if flux.shape[-1] != GRID_SIZE:
        raise BadSpectrumError(f"image needs {GRID_SIZE} grid points, got {flux.shape[-1]}")
    return np.add.reduceat(flux, _IMAGE_STARTS, axis=-1) / _IMAGE_COUNTS


def image(flux_on_grid) -> np.ndarray:
    """(..., 3601) -> (..., 28, 28) uint8: binned means, min-max scaled per spectrum, rounded.

    A flat spectrum (max == min) maps to an all-zero image.
    """
    means = binned_means(flux_on_grid)
    lo = means.min(axis=-1, keepdims=True)
    span = means.max(axis=-1, keepdims=True) - lo
    scaled = np.where(span > 0, (means - lo) / np.where(span > 0, span, 1.0), 0.0)
    pixels = np.rint(scaled * 255.0).astype(np.uint8)
    return pixels.reshape(*pixels.shape[:-1], IMAGE_SIDE, IMAGE_SIDE)


# ----------------------------------------------------------------------------------------------
# Where each model input comes from: wavelength ranges of image pixels and line values

def image_pixel_wavelengths() -> np.ndarray:
    """(784, 2) float64: [first, last] grid wavelength (A) averaged into each image pixel, in
    row-major order (pixel (r, c) is row ``28 * r + c``). Pixel 0 covers 3700.0-3706.0 A
    (grid points 0-4); bins hold 4 or 5 grid points, so a pixel spans 4.5-6 A at its
    centres and ~6.9 A between neighbouring bin edges."""
    first = _IMAGE_STARTS
    last = first + _IMAGE_COUNTS - 1
    return np.stack([GRID[first], GRID[last]], axis=1)


def image_pixel_edges() -> np.ndarray:
    """(785,) float64: wavelength (A) of the image's bin edges, ``linspace(0, 3601, 785)`` in
    grid index mapped linearly onto the grid (edge 0 is 3700 A, edge 784 is 9101.5 A): pixel i
    spans ``[edges[i], edges[i+1])``, ~6.89 A each."""
    return GRID_START + GRID_STEP * _IMAGE_EDGES


def line_value_wavelengths() -> np.ndarray:
    """(721, 2) float64: [first, last] grid wavelength (A) averaged into each line-vector value.
    Value i is the width-5 box mean centred on ``GRID[5 * i]`` (edge padded: the first and
    last values repeat the end points), so it covers ``GRID[5i] -/+ 3`` A clipped to the grid."""
    half = LINE_FILTER_WIDTH // 2
    centre = np.arange(LINE_SIZE) * LINE_FILTER_WIDTH
    lo = np.clip(centre - half, 0, GRID_SIZE - 1)
    hi = np.clip(centre + half, 0, GRID_SIZE - 1)
    return np.stack([GRID[lo], GRID[hi]], axis=1)


def line_value_centres() -> np.ndarray:
    """(721,) float64: the grid wavelength each line-vector value is centred on, ``GRID[5 i]``."""
    return GRID[::LINE_FILTER_WIDTH].copy()


def input_wavelengths(modality: str) -> np.ndarray:
    """Centre wavelength (A) of every model input value, flattened in the input's order:
    (784,) for "image" (bin centres, row-major), (721,) for "line"."""
    if modality == "image":
        edges = image_pixel_edges()
        return 0.5 * (edges[:-1] + edges[1:])
    if modality == "line":
        return line_value_centres()
    raise ValueError(f"modality must be 'image' or 'line', got {modality!r}")
