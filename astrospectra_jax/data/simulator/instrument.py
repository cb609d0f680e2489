"""Line of sight, atmosphere, instrument and noise: intrinsic spectra -> what LAMOST delivers.

Milky Way dust (CCM 1989, R_V = 3.1) with interstellar Ca II K, Na D and diffuse bands;
telluric O2 / H2O residuals; flux-calibration wobble; the blue/red arm join near 5900 A; photon
+ sky noise set by a g-band S/N through a throughput curve; sky-line residuals; cosmic rays;
pipeline-masked stretches bridged the way ``recipe.to_grid`` bridges them; red ends of exact
zeros, as many DR8 / DR10 files have. (The nominal resolution is already in every profile
basis, ``lines.RESOLUTION``; a random extra blur lowers it per spectrum.)

What cannot be matched to the real sets spectrum by spectrum (calibration, resolution, S/N,
sky, line-strength scatter at fixed class) is drawn from the ranges of ``NuisanceRanges``, the
one place they are written: wide enough to cover the real LAMOST DR1/DR8/DR10 and SDSS sets, so
that a model trained on simulated spectra learns to ignore them. ``NuisanceRanges().without(name)``
switches one off (its ablation in benchmarks/README.md, "Simulator realism").
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy.ndimage import gaussian_filter1d

from astrospectra_jax.data import recipe
from astrospectra_jax.data.simulator import dust, lines

# Interstellar absorption (air A, sigma A incl. resolution, EW per unit E(B-V) A): Ca II K,
# Na D, diffuse interstellar bands 4428, 5780, 5797, 6284, 6614.
_INTERSTELLAR = ((3933.66, 1.2, 0.25), (5889.95, 1.5, 0.35), (5895.92, 1.5, 0.3),
                 (4428.0, 8.0, 1.0), (5780.5, 1.6, 0.45), (5797.1, 1.4, 0.15),
                 (6283.8, 2.2, 0.6), (6613.6, 1.5, 0.2))
# Telluric residuals after the pipeline's correction (vacuum A head, e-folding length A, typical
# depth): O2 B, H2O, O2 A, H2O, H2O.
_TELLURIC = ((6869.0, 25.0, 0.03), (7170.0, 90.0, 0.015), (7596.0, 35.0, 0.03),
             (8135.0, 120.0, 0.02), (8950.0, 150.0, 0.04))
# Night-sky emission (air A): Hg I street lights, [O I], Na D and bright OH lines; relative
# strengths per line.
_SKY_LINES_AIR = (
    4046.6, 4358.3, 5460.7, 5577.3, 5890.0, 5896.0, 6300.3, 6363.8, 6498.7, 6533.0, 6553.6,
    6577.2, 6604.3, 6834.0, 6863.9, 6912.6, 6923.2, 6939.5, 6949.0, 7240.0, 7276.4, 7284.0,
    7303.7, 7316.3, 7329.2, 7340.9, 7358.7, 7369.2, 7392.2, 7750.6, 7794.1, 7821.5, 7853.4,
    7913.7, 7964.6, 7993.3, 8025.8, 8344.6, 8382.4, 8399.2, 8430.2, 8452.3, 8465.4, 8493.4,
    8505.1, 8761.3, 8767.9, 8778.3, 8791.2, 8827.1, 8836.0, 8885.8, 8903.1, 8919.6, 8943.4,
    8958.1, 8988.4, 9001.6, 9037.0, 9049.2, 9093.0)
_SKY_LINE_STRENGTH = (0.5, 0.8, 0.8, 6.0, 0.8, 0.6, 2.5, 0.9) + (2.0,) * 53
# Photons per native pixel per unit flux, relative to 4750 A: the blue arm's efficiency falls
# steeply below 4300 A, the red arm's CCDs collect 2-4x more (and native pixels widen with
# wavelength); a dip at the dichroic. Gives band S/N ratios u/g ~0.15, r/g ~1.5, i/g ~1.9,
# z/g ~1.4 for F stars and higher for redder stars, as in LAMOST headers.
_THROUGHPUT = ((3700.0, 0.007), (3800.0, 0.014), (3900.0, 0.035), (4000.0, 0.1), (4300.0, 0.45),
               (4750.0, 1.0), (5300.0, 1.3), (5700.0, 1.2), (5900.0, 0.9), (6100.0, 2.4),
               (6500.0, 3.4), (7000.0, 4.8), (7600.0, 5.7), (8200.0, 5.6), (8700.0, 5.0),
               (9000.0, 3.4), (9100.0, 2.4))
_ARM_JOIN = 5900.0
_JOIN_WINDOW = slice(int(np.searchsorted(lines.LAM, 5600.0)),
                     int(np.searchsorted(lines.LAM, 6300.0)))
_G_BAND = slice(int(np.searchsorted(lines.LAM, 4000.0)), int(np.searchsorted(lines.LAM, 5500.0)))
# Per class: which S/N range of NuisanceRanges; median flux level (mean over the
# grid, LAMOST units) and its scatter (natural log); sky / object flux ratio; Milky Way
# E(B-V): exponential mean, plus a share of disc sight lines with more; the range of the
# fraction of it the flux calibration removes.
_OBSERVING = {
    "star": dict(snr="snr_star", level=250.0, level_ln=1.1,
                 sky_ratio=0.15, ebv=0.04, disc_share=0.2, calibrated_ebv=(0.5, 1.2)),
    "galaxy": dict(snr="snr_faint", level=30.0, level_ln=0.8,
                   sky_ratio=1.5, ebv=0.03, disc_share=0.0, calibrated_ebv=(0.5, 1.2)),
    "qso": dict(snr="snr_faint", level=25.0, level_ln=0.8,
                sky_ratio=1.5, ebv=0.03, disc_share=0.0, calibrated_ebv=(0.5, 1.2)),
}
# Stretches the pipeline flags (or-mask) and the recipe bridges: (probability, start range A,
# end range A); an end range of None means a short defect of 3-30 A.
_MASKS = (
    (0.25, (3700.0, 3700.0), (3720.0, 4000.0)),  # blue edge, low throughput
    (0.55, (8850.0, 9100.0), (9100.0, 9100.0)),  # red edge
    (0.15, (5565.0, 5572.0), (5582.0, 5590.0)),  # [O I] 5577 sky line
    (0.08, (5700.0, 5850.0), (5860.0, 5960.0)),  # arm join
    (0.10, (7580.0, 7600.0), (7660.0, 7720.0)),  # O2 A band
    (0.10, (3800.0, 9000.0), None),  # a cosmetic defect anywhere
)


@dataclasses.dataclass(frozen=True)
class NuisanceRanges:
    """Ranges of the nuisances the simulator randomises; uniform draws unless said otherwise.

    Builders 1.2.0 drew the first four from normal distributions (blue droop 0.3 +- 0.2, arm
    step 0 +- 0.035, bump 0.01 +- 0.03, Legendre tilt sigmas 0.07 / 0.04 / 0.03), held the sky
    residual at 2 %, had no extra blur and no line-strength scatter. These ranges span about
    those distributions' 95 % intervals, the tilt's twice (the one range that matters on the
    real sets: benchmarks/README.md, ablation).
    """

    # Blue-edge calibration droop: log-flux depth at 3700 A of (4000 - lam) / 300)^1.5. Real
    # F/G/K stars' flux at 3700 A over 4000-4100 A: DR1 ~0.78-0.84, DR8 / DR10 ~0.60-0.79.
    blue_droop: tuple[float, float] = (-0.1, 0.8)
    # Blue/red arm join near 5900 A: a log-flux step and a bump just red of it.
    arm_step: tuple[float, float] = (-0.08, 0.08)
    arm_bump: tuple[float, float] = (-0.04, 0.06)
    # Flux-calibration error: log-flux Legendre P1 (tilt), P2, P3 coefficient ranges (+-).
    calibration_tilt: tuple[float, float, float] = (0.15, 0.08, 0.06)
    # Share of spectra ending in exact zeros (DR8 154/220, DR10 26/60, DR1 0/179 files), and the
    # mean distance (A, exponential, at most 100 A) of the first zero from 9100 A.
    zero_tail_share: float = 0.4
    zero_tail_mean_a: float = 23.0
    # Extra Gaussian blur (sigma, A) on top of R = 1800 (sigma 1.2 A at 5000 A): R 1800 to ~1250.
    extra_blur_a: tuple[float, float] = (0.0, 1.2)
    # g-band S/N drawn log-uniformly in these ranges, per kind (LAMOST stars in the real set:
    # S/N ~10 to several hundred; SDSS/BOSS quasars and galaxies ~2-30). The medians, 35 and
    # 7.7, are those of builders 1.2.0's log-normal draws.
    snr_star: tuple[float, float] = (6.0, 200.0)
    snr_faint: tuple[float, float] = (2.0, 30.0)
    # Sky-subtraction residual at each sky line: per-spectrum sigma of the line fraction left.
    sky_residual: tuple[float, float] = (0.0, 0.05)
    # Line-strength scatter at fixed Teff, log g, [Fe/H]: per-star sigma of ln(strength), drawn
    # independently per feature (abundance scatter, microturbulence).
    line_scatter: tuple[float, float] = (0.0, 0.15)

    def without(self, name: str) -> "NuisanceRanges":
        """These ranges with nuisance ``name`` switched off (its neutral value)."""
        if name not in _OFF:
            raise ValueError(f"unknown nuisance {name!r}; known: {', '.join(_OFF)}")
        return dataclasses.replace(self, **_OFF[name])


# Each nuisance's neutral value; "snr" holds every spectrum at its kind's median S/N.
_OFF = {
    "blue_droop": dict(blue_droop=(0.0, 0.0)),
    "arm_join": dict(arm_step=(0.0, 0.0), arm_bump=(0.0, 0.0)),
    "calibration_tilt": dict(calibration_tilt=(0.0, 0.0, 0.0)),
    "zero_tail": dict(zero_tail_share=0.0),
    "resolution": dict(extra_blur_a=(0.0, 0.0)),
    "snr": dict(snr_star=(35.0, 35.0), snr_faint=(7.0, 7.0)),
    "sky_residual": dict(sky_residual=(0.0, 0.0)),
    "line_scatter": dict(line_scatter=(0.0, 0.0)),
}
NUISANCES = tuple(_OFF)


@dataclasses.dataclass(frozen=True)
class _ObservedFrame:
    log_basis: np.ndarray  # (11, 3601): dust, DIBs, 5 telluric bands, Legendre P1..P3, blue edge
    sky_lines: np.ndarray  # (lines, 3601), unit-area lines x strength
    sky: np.ndarray  # (3601,) sky continuum + lines
    inverse_throughput: np.ndarray  # (3601,)


@functools.lru_cache(maxsize=None)
def _observed_frame() -> _ObservedFrame:
    lam = lines.LAM
    reddening = -0.4 * lines.LN10 * 3.1 * dust.ccm89(lam)
    dib = np.zeros_like(lam)
    for air, sigma, ew in _INTERSTELLAR:
        centre = float(lines.air_to_vacuum(air))
        dib -= ew * np.exp(-0.5 * ((lam - centre) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    telluric = [-np.where(lam >= head, np.exp(-(lam - head) / length), 0.0)
                for head, length, _ in _TELLURIC]
    x = (lam - lam.mean()) / (lam.max() - lam.mean())
    legendre = [np.polynomial.legendre.Legendre.basis(k)(x) for k in (1, 2, 3)]
    blue_edge = -np.clip((4000.0 - lam) / 300.0, 0.0, None) ** 1.5
    log_basis = np.stack([reddening, dib, *telluric, *legendre, blue_edge]).astype(np.float32)
    centres = lines.air_to_vacuum(np.array(_SKY_LINES_AIR))
    sigma = centres / lines.RESOLUTION / 2.3548
    sky_lines = np.exp(-0.5 * ((lam[None, :] - centres[:, None]) / sigma[:, None]) ** 2)
    unit_area = recipe.GRID_STEP / (sigma * np.sqrt(2 * np.pi))  # lines integrate to 1 pixel
    sky_lines *= (np.array(_SKY_LINE_STRENGTH) * unit_area)[:, None]
    sky = 0.6 + 0.4 * (lam / 6000.0) ** 2 + sky_lines.sum(axis=0)
    throughput = np.interp(lam, *np.array(_THROUGHPUT).T)
    frame = _ObservedFrame(log_basis, sky_lines.astype(np.float32), sky.astype(np.float32),
                           (1.0 / throughput).astype(np.float32))
    for array in (frame.log_basis, frame.sky_lines, frame.sky, frame.inverse_throughput):
        array.flags.writeable = False
    return frame


def observe(flux, kind: str, rng, nuisances: NuisanceRanges = NuisanceRanges(), *,
            with_sigma: bool = False):
    """Milky Way dust, atmosphere, calibration, flux level, noise and masks: (n, 3601) float32.

    Returns (flux, params), and the noise sigma per pixel (n, 3601) too when ``with_sigma``.
    """
    n = flux.shape[0]
    frame = _observed_frame()
    cond = _OBSERVING[kind]
    ebv = rng.exponential(cond["ebv"], n) + (rng.random(n) < cond["disc_share"]) * rng.uniform(
        0.05, 0.35, n)
    # LAMOST's relative flux calibration divides by pseudo-standard F stars of the same field
    # matched to unreddened models, which removes most of the smooth extinction (Du et al.
    # 2016): the field's standards carry 0.5-1.2 times this object's E(B-V). Interstellar
    # lines and bands stay.
    smooth_ebv = ebv * (1.0 - rng.uniform(*cond["calibrated_ebv"], n))
    telluric = np.array([t[2] for t in _TELLURIC])[None, :] * rng.lognormal(0.0, 0.5, (n, 1))
    # Flux calibration: a smooth multiplicative error (Legendre series in wavelength).
    tilt = np.array(nuisances.calibration_tilt)
    calibration = rng.uniform(-1.0, 1.0, (n, 3)) * tilt
    # The blue edge (low throughput, few standard-star photons) is calibrated worst.
    blue_droop = rng.uniform(*nuisances.blue_droop, n)
    coefficients = np.column_stack([smooth_ebv, np.minimum(ebv, 1.0), telluric, calibration,
                                    blue_droop])
    log_factor = coefficients.astype(np.float32) @ frame.log_basis
    # The blue and red arms are scaled separately: a step at the join and a small bump.
    join = rng.normal(_ARM_JOIN, 25.0, n).astype(np.float32)
    step = rng.uniform(*nuisances.arm_step, n).astype(np.float32)
    bump = rng.uniform(*nuisances.arm_bump, n).astype(np.float32)
    window = lines.LAM32[_JOIN_WINDOW][None, :] - join[:, None]
    log_factor[:, _JOIN_WINDOW] += (step[:, None] / (1.0 + np.exp(-window / 8.0))
                                    + bump[:, None] * np.exp(-0.5 * ((window - 70.0) / 50.0) ** 2))
    log_factor[:, _JOIN_WINDOW.stop:] += step[:, None]
    flux = np.asarray(flux, dtype=np.float32) * np.exp(log_factor)
    blur = rng.uniform(*nuisances.extra_blur_a, n)
    if np.any(blur > 0):
        flux = _blur(flux, blur / recipe.GRID_STEP)
    # Flux level and S/N: correlated draws (brighter objects tend to have higher S/N).
    lo, hi = np.log10(getattr(nuisances, cond["snr"]))
    position = rng.random(n)
    log_snr = lo + (hi - lo) * position
    snr = 10 ** log_snr
    common = np.sqrt(3.0) * (2.0 * position - 1.0)  # unit variance
    level = cond["level"] * np.exp(cond["level_ln"] * (
        0.5 * common + np.sqrt(0.75) * rng.standard_normal(n)))
    mean = flux.mean(axis=1)
    flux *= (level / np.where(mean > 0, mean, 1.0)).astype(np.float32)[:, None]
    # Photon noise of object + sky through the throughput, scaled to the g-band S/N:
    # sigma^2 = (f + sky) / (throughput * gain).
    sky_ratio = cond["sky_ratio"] * rng.lognormal(0.0, 0.5, n)
    sky_level = (sky_ratio * level).astype(np.float32)[:, None]
    variance = np.maximum(flux, 0.0) + sky_level * frame.sky[None, :]
    variance *= frame.inverse_throughput[None, :]
    g = _G_BAND
    unit_snr = (np.maximum(flux[:, g], 0.0) / np.sqrt(variance[:, g])).mean(axis=1)
    gain = (snr / np.maximum(unit_snr, 1e-12)) ** 2
    sigma = np.sqrt(variance / gain.astype(np.float32)[:, None])
    flux += sigma * _native_noise(n, rng)
    # Sky-subtraction residuals at the sky lines (a few per cent of each line).
    residual_sigma = rng.uniform(*nuisances.sky_residual, n)
    residual = (rng.standard_normal((n, frame.sky_lines.shape[0]))
                * residual_sigma[:, None]).astype(np.float32)
    flux += sky_level * (residual @ frame.sky_lines)
    # Cosmic-ray hits the pipeline missed.
    hits = rng.poisson(0.7, n)
    rows = np.repeat(np.arange(n), hits)
    cols = rng.integers(0, flux.shape[1], rows.size)
    flux[rows, cols] += sigma[rows, cols] * rng.uniform(5.0, 30.0, rows.size).astype(np.float32)
    masked = _mask_and_bridge(flux, rng)
    zero_from = _zero_red_tail(flux, rng, nuisances)
    params = {"ebv": ebv, "ebv_after_calibration": smooth_ebv, "snr_g": snr,
              "flux_level": level, "sky_ratio": sky_ratio,
              "arm_step": step.astype(np.float64), "blue_droop": blue_droop,
              "calibration_tilt": calibration[:, 0], "extra_blur_a": blur,
              "sky_residual": residual_sigma, "masked_fraction": masked,
              "zero_tail_from": zero_from}
    if with_sigma:
        return flux, params, sigma
    return flux, params


_BLUR_STEP = 0.1  # pixels: each spectrum's blur is rounded to this step


def _blur(flux, sigma_pixels) -> np.ndarray:
    """Gaussian blur of each row by its own sigma (pixels, rounded to _BLUR_STEP), edge values
    held: one ``gaussian_filter1d`` per distinct sigma."""
    steps = np.rint(np.asarray(sigma_pixels) / _BLUR_STEP).astype(np.int64)
    for step in np.unique(steps[steps > 0]):
        rows = np.flatnonzero(steps == step)
        flux[rows] = gaussian_filter1d(flux[rows], step * _BLUR_STEP, axis=1, mode="nearest",
                                       truncate=4.0)
    return flux


# Since DR8 many LAMOST files end the red arm with pixels of flux exactly 0 that carry a positive
# inverse variance and no mask bit, so the recipe keeps them (the grid's last values are 0 and
# each image's minimum is the tail). In the real set: 154 of 220 DR8 and 26 of 60 DR10 files,
# none of 179 DR1 files; the zeros start 0-100 A before 9100 A (quartiles ~35, 16, 9 A before).
# Share and mean distance: NuisanceRanges.zero_tail_share and zero_tail_mean_a.


def _zero_red_tail(flux, rng, nuisances: NuisanceRanges) -> np.ndarray:
    """Zero the red end in place for a share of spectra; returns where it starts (NaN: none)."""
    n = flux.shape[0]
    on = rng.random(n) < nuisances.zero_tail_share
    start_lam = lines.LAM[-1] - np.minimum(rng.exponential(nuisances.zero_tail_mean_a, n), 100.0)
    start = np.searchsorted(lines.LAM, start_lam)
    flux[np.arange(lines.LAM.size)[None, :] >= np.where(on, start, lines.LAM.size)[:, None]] = 0.0
    return np.where(on, start_lam, np.nan)


# LAMOST pixels: constant log10 steps of 1e-4 (69 km/s) from 3690 A; the header S/N is per such
# pixel. The recipe interpolates them onto GRID, which averages and correlates the noise.
_NATIVE_LAM = 3690.0 * 10.0 ** (1e-4 * np.arange(3910))
_NATIVE_LO = np.clip(np.searchsorted(_NATIVE_LAM, lines.LAM) - 1, 0, _NATIVE_LAM.size - 2)
_NATIVE_W = ((lines.LAM - _NATIVE_LAM[_NATIVE_LO])
             / (_NATIVE_LAM[_NATIVE_LO + 1] - _NATIVE_LAM[_NATIVE_LO])).astype(np.float32)


_RESAMPLING_KERNEL = tuple(np.array([0.25, 1.0, 0.25], np.float32) / np.float32(np.sqrt(1.125)))


def _native_noise(n, rng) -> np.ndarray:
    """Unit white noise per native pixel, linearly interpolated onto GRID: (n, 3601)."""
    native = rng.standard_normal((n, _NATIVE_LAM.size + 2), dtype=np.float32)
    # The pipeline's resampling from detector to log-wavelength pixels correlates neighbours.
    a, b, c = _RESAMPLING_KERNEL
    native = a * native[:, :-2] + b * native[:, 1:-1] + c * native[:, 2:]
    left = native[:, _NATIVE_LO]
    return left + _NATIVE_W * (native[:, _NATIVE_LO + 1] - left)


def _mask_and_bridge(flux, rng) -> np.ndarray:
    """Bridge randomly flagged stretches in place the way ``recipe.to_grid`` does (linear
    between the good neighbours, edge value held at the ends); returns the masked fraction."""
    n, size = flux.shape
    rows = np.arange(n)
    masked = np.zeros(n)
    for probability, (s0, s1), end in _MASKS:
        start_lam = rng.uniform(s0, s1, n)
        end_lam = rng.uniform(*end, n) if end is not None else start_lam + rng.uniform(3, 30, n)
        on = rng.random(n) < probability
        start = np.searchsorted(lines.LAM, start_lam)
        stop = np.minimum(np.searchsorted(lines.LAM, end_lam, side="right"), size)
        stop = np.where(on, np.maximum(stop, start), start)
        width = int((stop - start).max())
        if width == 0:
            continue
        left = flux[rows, np.maximum(start - 1, 0)]
        right = flux[rows, np.minimum(stop, size - 1)]
        left = np.where(start == 0, right, left)
        right = np.where(stop == size, left, right)
        offset = np.arange(width)[None, :]
        cols = start[:, None] + offset
        inside = cols < stop[:, None]
        t = ((offset + 1) / (stop - start + 1)[:, None]).astype(np.float32)
        values = left[:, None] + (right - left)[:, None] * t
        r, c = np.nonzero(inside)
        flux[r, cols[r, c]] = values[r, c]
        masked += (stop - start) / size
    return masked
