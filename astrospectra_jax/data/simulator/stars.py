"""Stars: spectral types, temperatures, gravities and metallicities -> rest-frame spectra.

A star is a continuum (Planck at a colour temperature tied to Teff, blue line blanketing, the
Balmer jump) times exp(-absorption), with the absorption features of ``lines.STELLAR_FEATURES``
scaled with Teff, [Fe/H] and log g, broadened by rotation and shifted by a radial velocity.
Classes are spectral types: giants and metal-poor stars of a type are cooler than dwarfs, so
classes overlap in Teff as in a survey. ``stellar_population`` is also the galaxies' and the
quasar hosts' starlight.
"""

from __future__ import annotations

import functools

import numpy as np

from astrospectra_jax.data.simulator import lines

_HC_OVER_K = 1.438777e8  # Angstrom * Kelvin


def _planck_ratio(lam, t_col):
    """B_lambda(T) / B_5500(T): lam (M,) Angstrom, t_col (n,) -> (n, M) float32."""
    lam = np.asarray(lam, dtype=np.float32)
    x = np.minimum((_HC_OVER_K / t_col).astype(np.float32)[:, None] / lam[None, :], 80.0)
    x_ref = np.expm1(_HC_OVER_K / (5500.0 * t_col)).astype(np.float32)
    # exp(x) - 1 rather than expm1: x > 0.5 here, and exp is much faster in float32.
    return ((5500.0 / lam) ** 5)[None, :] * x_ref[:, None] / (np.exp(x) - 1.0)

# Smooth continuum terms (not lines): blue blanketing by unresolved metal lines, and the Balmer
# jump below 3646 A; optical depth scales at lines.TEFF_NODES.
_BLANKETING = lines.teff_table(1.2, 1.05, 0.9, 0.72, 0.47, 0.24, 0.12, 0.05, 0.03, 0.02, 0.02,
                               0.015, 0.015, 0.01)
_BALMER_JUMP = lines.teff_table(0, 0, 0, 0, 0.02, 0.05, 0.1, 0.15, 0.22, 0.3, 0.45, 0.5, 0.42,
                                0.22)
# The optical continuum of FGK stars forms below tau = 1 where T > Teff: it is bluer than a
# Planck curve at Teff. Colour temperature / Teff at lines.TEFF_NODES.
_COLOUR_TEMPERATURE = lines.teff_table(1.0, 1.02, 1.07, 1.10, 1.11, 1.11, 1.11, 1.11, 1.12,
                                       1.13, 1.17, 1.2, 1.15, 1.0)


_STAR_GRID = (3600.0, 9250.0, 40.0)
# Total Gaussian broadening (instrument + rotation or velocity dispersion) of absorption
# features, km/s; profile sets are built on first use.
_ABSORPTION_BINS = lines.geometric_bins(lines.SIGMA_INSTRUMENT_KMS, 450.0)
# Spectral classes are defined on the dwarf temperature scale ("type temperature"): (name,
# range, share of STAR spectra in v1).
_SPECTRAL_TYPES = (("A", 7500.0, 10000.0, 0.10), ("F", 6000.0, 7500.0, 0.32),
                   ("G", 5200.0, 6000.0, 0.30), ("K", 3900.0, 5200.0, 0.20),
                   ("M", 3100.0, 3900.0, 0.08))
_FGK_RANGES = ((6000.0, 7500.0), (5200.0, 6000.0), (3900.0, 5200.0))
# Within a class a magnitude-limited survey holds more of the stars near 5500-6300 K: Beta
# shapes on each range (F skewed cool, K skewed warm).
_FGK_SHAPES = ((1.0, 1.6), (1.0, 1.0), (1.7, 1.0))
# A class is assigned from the spectrum by a pipeline, not from the true temperature: the type
# temperature scatters across the class borders by this much.
TEFF_CLASS_SCATTER = 150.0
# Giants of the same MK type are cooler than dwarfs (G5 III ~5050 K vs G5 V ~5660 K; the two
# scales meet again at M0): Teff(dwarf) - Teff(giant) at type temperatures, and the giant share
# of a magnitude-limited sample, highest for the red clump (typed G8-K1 III).
_TYPE_TEFF = (3850.0, 4050.0, 4450.0, 4830.0, 5280.0, 5490.0, 5660.0, 5920.0, 6500.0)
_GIANT_TEFF_OFFSET = (0.0, 200.0, 500.0, 530.0, 530.0, 540.0, 500.0, 100.0, 0.0)
_GIANT_SHARE = (0.1, 0.12, 0.15, 0.25, 0.45, 0.45, 0.3, 0.1, 0.03)
# Weaker lines make a metal-poor star look earlier to a classifier: Teff shift per dex [Fe/H]
# at a fixed type.
TYPE_TEFF_PER_DEX = 250.0
# [Fe/H] populations: thin disc, thick disc, halo (share, mean, sigma).
_METALLICITY_POPULATIONS = ((0.85, -0.15, 0.25), (0.12, -0.6, 0.3), (0.03, -1.5, 0.5))


def type_teff_for_fgk(labels, rng):
    lo, hi = np.array(_FGK_RANGES).T
    a, b = np.array(_FGK_SHAPES).T
    teff = lo[labels] + (hi - lo)[labels] * rng.beta(a[labels], b[labels])
    return teff + rng.normal(0.0, TEFF_CLASS_SCATTER, labels.size)


def type_teff_for_any_star(n, rng):
    shares = np.array([t[3] for t in _SPECTRAL_TYPES])
    kind = rng.choice(len(shares), size=n, p=shares / shares.sum())
    lo = np.array([t[1] for t in _SPECTRAL_TYPES])[kind]
    hi = np.array([t[2] for t in _SPECTRAL_TYPES])[kind]
    return rng.uniform(lo, hi) + rng.normal(0.0, TEFF_CLASS_SCATTER, n)


def _metallicity(n, rng):
    share, mean, sigma = np.array(_METALLICITY_POPULATIONS).T
    population = rng.choice(share.size, size=n, p=share / share.sum())
    return np.clip(rng.normal(mean[population], sigma[population]), -2.5, 0.5)


def _stellar_strengths(teff, logg, feh, features=lines.STELLAR_FEATURES):
    """(n, K) feature strengths: Teff tables x metallicity x gravity."""
    teff = np.asarray(teff, dtype=np.float64)
    table = np.array([f.strength for f in features])
    metal = np.array([f.metal for f in features])
    giant = np.array([f.giant for f in features])
    base = np.stack([np.interp(teff, lines.TEFF_NODES, row) for row in table], axis=1)
    low_gravity = np.clip((4.5 - np.asarray(logg))[:, None] / 2.0, 0.0, 1.5)
    metallicity = 10.0 ** (metal[None, :] * np.asarray(feh)[:, None])
    return base * metallicity * giant[None, :] ** low_gravity


def _stellar_continuum(lam, teff, feh) -> np.ndarray:
    """(n, M) float32, 1 at 5500 A: Planck at the colour temperature x blue blanketing x
    Balmer jump."""
    lam = np.asarray(lam, dtype=np.float64)
    teff = np.asarray(teff, dtype=np.float64)
    t_col = teff * np.interp(teff, lines.TEFF_NODES, _COLOUR_TEMPERATURE)
    blanket = np.interp(teff, lines.TEFF_NODES, _BLANKETING) * 10.0 ** (0.5 * np.asarray(feh))
    jump = lines.LN10 * np.interp(teff, lines.TEFF_NODES, _BALMER_JUMP)
    # Unresolved metal lines crowd towards the blue: optical depth rising below ~4500 A, and
    # saturating below ~4000 A where the crowded lines are black.
    crowding = np.clip((4500.0 / lam) ** 5 - 1.0, 0.0, None)
    crowding = np.minimum(crowding, 0.75 + 0.25 * (crowding - 0.75))
    shapes = np.stack([crowding,
                       1.0 / (1.0 + np.exp((lam - 3646.0) / 15.0))]).astype(np.float32)
    depth = np.stack([blanket, jump], axis=1).astype(np.float32) @ shapes
    return _planck_ratio(lam, t_col) * np.exp(-depth)


def stellar_population(grid_key, teff, logg, feh, broadening_kms) -> np.ndarray:
    """Rest-frame spectra (n, M) on a log grid: continuum x exp(-absorption), 1 at 5500 A."""
    tau = lines.render(_stellar_strengths(teff, logg, feh), broadening_kms, _ABSORPTION_BINS,
                  functools.partial(lines.broadened_basis, "stellar", grid_key))
    return _stellar_continuum(lines.log_grid(*grid_key), teff, feh) * np.exp(-tau)


def simulate(type_teff, rng, line_scatter=(0.0, 0.0), metal_shift=True):
    """Stars typed at ``type_teff`` (dwarf scale): observed-frame spectra on ``lines.LAM``.

    ``line_scatter``: range of the per-star sigma of ln(feature strength), drawn per feature.
    ``metal_shift``: make metal-poor stars of a type cooler (TYPE_TEFF_PER_DEX), the stand-in
    for a classifier when labels are type temperatures; off when ``labeller`` gives the labels
    (it then proposes physical temperatures).
    """
    n = type_teff.size
    type_teff = np.clip(type_teff, 2900.0, 30000.0)
    giant = rng.random(n) < np.interp(type_teff, _TYPE_TEFF, _GIANT_SHARE)
    feh = _metallicity(n, rng)
    metal_shift = metal_shift * TYPE_TEFF_PER_DEX * feh * (type_teff < 7500.0)
    teff = type_teff - giant * np.interp(type_teff, _TYPE_TEFF, _GIANT_TEFF_OFFSET) + metal_shift
    logg = np.where(giant, rng.uniform(1.8, 3.4, n), rng.uniform(3.9, 4.7, n))
    # Hot stars rotate faster; the rotation kernel (sigma ~ v sin i / 2) adds in quadrature.
    vsini = rng.exponential(np.interp(teff, [5500.0, 6500.0, 8000.0], [3.0, 30.0, 90.0]))
    rv = rng.normal(0.0, 40.0, n) + rng.normal(0.0, 30.0, n) * (rng.random(n) < 0.3)
    strengths = _stellar_strengths(teff, logg, feh)
    if line_scatter[1] > 0:
        scatter = rng.uniform(*line_scatter, n)
        strengths = strengths * np.exp(scatter[:, None] * rng.standard_normal(strengths.shape))
    observed = _observed_spectra(strengths, teff, feh, vsini, rv)
    params = {"teff": teff, "type_teff": type_teff, "logg": logg, "feh": feh, "vsini": vsini,
              "rv_kms": rv, "redshift": rv / lines.C_KMS}
    return observed, params


def reference_spectra(teff, logg, feh) -> np.ndarray:
    """Noiseless, non-rotating spectra at rest on ``lines.LAM`` (n, 3601): the references the
    survey-like labeller matches against."""
    teff, logg, feh = (np.broadcast_to(np.asarray(v, dtype=np.float64), np.shape(teff))
                       for v in (teff, logg, feh))
    zero = np.zeros(teff.shape)
    return _observed_spectra(_stellar_strengths(teff, logg, feh), teff, feh, zero, zero)


def _observed_spectra(strengths, teff, feh, vsini, rv) -> np.ndarray:
    broadening = np.hypot(lines.SIGMA_INSTRUMENT_KMS, 0.5 * vsini)
    tau = lines.render(strengths, broadening, _ABSORPTION_BINS,
                       functools.partial(lines.broadened_basis, "stellar", _STAR_GRID))
    tau = lines.to_observed(tau, lines.log_grid(*_STAR_GRID), 1.0 + rv / lines.C_KMS)
    # The continuum is smooth: evaluating it at the observed wavelengths is exact to ~v/c.
    return _stellar_continuum(lines.LAM, teff, feh) * np.exp(-tau)
