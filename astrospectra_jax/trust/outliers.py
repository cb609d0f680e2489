"""Simulated spectra outside the v2 (F/G/K) classes, for outlier exposure and OOD tests.

``simulated_outliers(n, rng)`` draws A and M stars (the classes' neighbours in temperature),
galaxies and quasars from the simulator, observed through the same instrument model as the
training spectra: an "other" class for training with K+1 classes, or a simulated OOD set.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from astrospectra_jax.data import recipe
from astrospectra_jax.data.simulator import galaxies, instrument, quasars, stars

OUTLIER_KINDS = ("A", "M", "GALAXY", "QSO")
DEFAULT_SHARES = (0.25, 0.25, 0.25, 0.25)


def _type_teff_range(letter: str) -> tuple[float, float]:
    # The simulator's dwarf type-temperature scale (stars._SPECTRAL_TYPES: name, lo, hi, share).
    for name, lo, hi, *_ in stars._SPECTRAL_TYPES:
        if name == letter:
            return float(lo), float(hi)
    raise ValueError(f"the simulator has no spectral type {letter!r}")


@dataclasses.dataclass(frozen=True)
class Outliers:
    flux: np.ndarray  # (n, 3601) float32 on recipe.GRID
    kind: np.ndarray  # (n,) str, one of OUTLIER_KINDS
    redshift: np.ndarray  # (n,) float64 (stars: radial velocity / c)


def simulated_outliers(n: int, rng, shares=DEFAULT_SHARES) -> Outliers:
    """``n`` simulated spectra outside F/G/K: A stars (type Teff uniform over the simulator's A
    range), M stars (its M range), galaxies and quasars, in ``shares`` (largest remainder), in
    random order. ``rng``: a ``numpy.random.Generator`` or an int seed."""
    rng = np.random.default_rng(rng)
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    shares = np.asarray(shares, dtype=np.float64)
    if shares.shape != (len(OUTLIER_KINDS),) or np.any(shares < 0) or shares.sum() <= 0:
        raise ValueError(f"shares must be {len(OUTLIER_KINDS)} non-negative numbers")
    exact = shares / shares.sum() * n
    counts = np.floor(exact).astype(np.int64)
    counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
    flux = np.empty((n, recipe.GRID_SIZE), np.float32)
    redshift = np.zeros(n)
    kinds = np.repeat(np.array(OUTLIER_KINDS), counts)
    start = 0
    for kind, count in zip(OUTLIER_KINDS, counts, strict=True):
        if count == 0:
            continue
        stop = start + count
        if kind in ("A", "M"):
            lo, hi = _type_teff_range(kind)
            intrinsic, params = stars.simulate(rng.uniform(lo, hi, count), rng)
            flux[start:stop], _ = instrument.observe(intrinsic, "star", rng)
        elif kind == "GALAXY":
            intrinsic, params = galaxies.simulate(count, rng)
            flux[start:stop], _ = instrument.observe(intrinsic, "galaxy", rng)
        else:
            intrinsic, params = quasars.simulate(count, rng)
            flux[start:stop], _ = instrument.observe(intrinsic, "qso", rng)
        redshift[start:stop] = params.get("redshift", np.zeros(count))
        start = stop
    order = rng.permutation(n)
    return Outliers(flux=flux[order], kind=kinds[order], redshift=redshift[order])
