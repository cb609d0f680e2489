"""Quasars: power-law continuum, emission lines, host light, dust and the Lyman forest.

Power-law continuum, Fe II and Balmer-continuum bumps, broad (FWHM 1800-10000 km/s) and narrow
emission lines from Ly-alpha to H-alpha (``lines.QSO_BROAD_LINES``, ``lines.QSO_NARROW_LINES``),
host-galaxy light at low z, SMC-like dust for a reddened minority, Ly-alpha/beta forest and
Lyman-limit absorption; redshift 0.1-4.5.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.ndimage import gaussian_filter1d

from astrospectra_jax.data.simulator import dust, lines, stars

_QSO_GRID = (640.0, 8500.0, 100.0)
# Fe II blends and the Balmer continuum as broad bumps: (centre A, sigma A, rest EW A).
_QSO_BUMPS = ((2500.0, 150.0, 45.0), (2950.0, 110.0, 25.0), (3300.0, 250.0, 40.0),
              (4570.0, 90.0, 20.0), (5270.0, 110.0, 20.0))
_QSO_FWHM_BINS = lines.geometric_bins(1500.0, 12000.0)
_NARROW_SIGMA_KMS = 200.0


@functools.lru_cache(maxsize=None)
def _broad_line_basis(fwhm_kms: float) -> np.ndarray:
    """(broad lines, pixels): a broad core plus a 2.5x broader base (Balmer and C IV lines are
    not Gaussian), convolved with the instrument."""
    grid = lines.log_grid(*_QSO_GRID)
    dlam = grid * np.log(grid[1] / grid[0])
    rows = []
    for _, lam, _, factor, shift in lines.QSO_BROAD_LINES:
        centre = lam * (1 + shift / lines.C_KMS)
        sigma = lam * fwhm_kms * factor / lines.C_KMS / 2.3548
        rows.append(0.65 * lines.profile(grid, dlam, centre, sigma, "gauss")
                    + 0.35 * lines.profile(grid, dlam, centre, 2.5 * sigma, "gauss"))
    rows = gaussian_filter1d(np.stack(rows), lines.SIGMA_INSTRUMENT_KMS / _QSO_GRID[2], axis=1,
                             mode="constant")
    basis = np.ascontiguousarray(rows, dtype=np.float32)
    basis.flags.writeable = False
    return basis


def simulate(n, rng):
    grid = lines.log_grid(*_QSO_GRID)
    dlam = grid * np.log(grid[1] / grid[0])
    redshift = np.clip(0.1 + rng.gamma(2.2, 0.6, n), 0.1, 4.5)
    beta = rng.normal(-1.55, 0.35, n)  # f_lambda ~ lambda^beta (alpha_nu ~ -0.45)
    continuum = np.exp(beta[:, None].astype(np.float32)
                       * np.log(grid / 3000.0).astype(np.float32)[None, :])
    bumps = sum(ew * lines.profile(grid, dlam, c, s, "gauss") for c, s, ew in _QSO_BUMPS)
    rest = continuum * (1.0 + rng.lognormal(0.0, 0.35, n)[:, None] * bumps[None, :]).astype(
        np.float32)
    # Broad lines: equivalent widths scatter per object and per line; Baldwin-like decline;
    # a few per cent are nearly featureless (BL Lac objects, weak-line quasars).
    featureless = rng.random(n) < 0.04
    strength = (rng.lognormal(0.0, 0.45, (n, 1)) * np.where(featureless, 0.05, 1.0)[:, None]
                * rng.lognormal(0.0, 0.25, (n, len(lines.QSO_BROAD_LINES))))
    ew = np.array([line[2] for line in lines.QSO_BROAD_LINES])[None, :] * strength
    ew *= (1.0 + redshift[:, None]) ** -0.3
    centres = np.array([line[1] for line in lines.QSO_BROAD_LINES])
    fwhm = 10 ** rng.uniform(np.log10(1800.0), np.log10(10000.0), n)
    rest += lines.render(ew * (centres[None, :] / 3000.0) ** beta[:, None], fwhm, _QSO_FWHM_BINS,
                    _broad_line_basis)
    narrow_centres = np.array([line[1] for line in lines.QSO_NARROW_LINES])
    narrow_ew = (np.array([line[2] for line in lines.QSO_NARROW_LINES])[None, :]
                 * rng.lognormal(0, 0.5, (n, 1)) * np.where(featureless, 0.05, 1.0)[:, None])
    narrow_basis = lines.broadened_basis("qso_narrow", _QSO_GRID,
                                    float(np.hypot(lines.SIGMA_INSTRUMENT_KMS, _NARROW_SIGMA_KMS)))
    rest += (narrow_ew * (narrow_centres[None, :] / 3000.0) ** beta[:, None]).astype(
        np.float32) @ narrow_basis
    # Host-galaxy light (old stars) shows at low redshift.
    host_fraction = rng.uniform(0.0, 0.8, n) * np.exp(-redshift / 0.4)
    host = stars.stellar_population(_QSO_GRID, rng.uniform(4600, 5200, n), np.full(n, 2.8),
                                    np.zeros(n), np.full(n, 220.0))
    at_5100 = np.searchsorted(grid, 5100.0)
    rest += (host_fraction * rest[:, at_5100] / host[:, at_5100])[:, None].astype(np.float32) * host
    # The continuum slope above (the Vanden Berk et al. 2001 composite) already holds the typical
    # quasar's dust: only a reddened minority gets more. Richards et al. (2003) and Hopkins et
    # al. (2004) find ~6-10% of SDSS quasars reddened, by SMC-like dust with E(B-V) ~0.04-0.3.
    # (An E(B-V) ~ exponential(0.04) for every quasar made the simulated z > 1.8 quasars'
    # mean spectrum redder than the 50 real SDSS quasars': benchmarks/README.md.)
    ebv = rng.exponential(0.1, n) * (rng.random(n) < 0.1)
    rest *= np.exp(ebv[:, None].astype(np.float32)
                   * (-0.4 * lines.LN10 * dust.smc(grid)).astype(np.float32)[None, :])
    # Lyman-limit systems absorb below 912 A in the quasar frame.
    tau_ll = 2.0 + rng.exponential(1.5, n) * (rng.random(n) < 0.5)
    rest *= np.where(grid[None, :] < 912.0, np.exp(-tau_ll)[:, None], 1.0).astype(np.float32)
    observed = lines.to_observed(rest, grid, 1.0 + redshift)
    forest = 1215.67 * (1.0 + redshift) > lines.LAM[0]
    if forest.any():
        observed[forest] *= _lyman_forest(redshift[forest], rng)
    params = {"redshift": redshift, "fwhm_kms": fwhm, "continuum_slope": beta,
              "featureless": featureless.astype(np.float64),
              "ebv_internal": ebv, "host_fraction": host_fraction}
    return observed, params


def _lyman_forest(redshift, rng):
    """Transmission (n, 3601) blueward of Ly-alpha: tau_eff = 0.0018 (1+z)^3.92
    (Faucher-Giguere et al. 2008) with lognormal fluctuations over a few pixels, plus the
    Ly-beta forest (f*lambda ratio 0.16) below Ly-beta."""
    n = redshift.size
    tau_alpha = 0.0018 * (lines.LAM / 1215.67) ** 3.92
    tau_beta = np.where(lines.LAM[None, :] < 1025.72 * (1.0 + redshift)[:, None],
                        0.16 * 0.0018 * (lines.LAM / 1025.72) ** 3.92, 0.0)
    smoothing = 1.5  # pixels
    field = gaussian_filter1d(rng.standard_normal((n, lines.LAM.size), dtype=np.float32), smoothing,
                              axis=1)
    field *= np.float32(np.sqrt(2.0 * np.sqrt(np.pi) * smoothing))  # unit variance
    fluctuation = np.exp(field - 0.5)
    in_forest = lines.LAM[None, :] < 1215.67 * (1.0 + redshift)[:, None]
    return np.where(in_forest, np.exp(-(tau_alpha[None, :] + tau_beta) * fluctuation), 1.0)


