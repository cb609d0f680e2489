"""Offline simulator of LAMOST-like low-resolution spectra: stars, galaxies and quasars.

``simulate(task, n, seed)`` returns spectra on ``recipe.GRID`` (3700-9100 A, observed frame,
vacuum wavelengths as in LAMOST files) in LAMOST-like flux units (10^1-10^4), with labels and the
physical parameters of every spectrum: what ``recipe.to_grid`` makes of a real file. It is a
physical model with parameters, not a set of templates:

- stars: Planck continuum at a colour temperature tied to Teff, blue line blanketing and the
  Balmer jump; absorption features (Balmer with Stark wings, Paschen, Ca II H&K, Ca I 4227,
  CH G band, CN, Mg b, MgH, Na D, ~360 strong Fe/Ca/Cr/Ti/Mn/Ni/Sr/Ba lines of the solar
  spectrum in three excitation groups, Ca II triplet, O I 7774, K I, Na I 8190, TiO and CaH
  bands) whose equivalent widths are tables in Teff, scaled with [Fe/H] and log g; rotation and
  radial velocity. Classes are spectral types: giants and metal-poor stars of a type are cooler
  than dwarfs, so classes overlap in Teff as in a survey;
- galaxies: old / intermediate-age / young stellar populations (4000 A break, Balmer
  absorption) with velocity dispersion and Calzetti dust; nebular emission with star-forming,
  AGN and LINER-like line ratios (BPT), passive and post-starburst galaxies; redshift 0-0.55;
- quasars: power-law continuum, Fe II and Balmer-continuum bumps, broad (FWHM 1800-10000 km/s)
  and narrow emission lines from Ly-alpha to H-alpha, host-galaxy light at low z, SMC-like dust,
  Ly-alpha/beta forest and Lyman-limit absorption; redshift 0.1-4.5;
- line of sight and instrument: Milky Way dust (CCM 1989, R_V = 3.1) with interstellar Ca II K,
  Na D and diffuse bands; telluric O2 / H2O residuals; resolution R = 1800; flux-calibration
  wobble; the blue/red arm join near 5900 A; photon + sky noise set by a g-band S/N through a
  throughput curve; sky-line residuals; cosmic rays; pipeline-masked stretches bridged the way
  ``recipe.to_grid`` bridges them.

Speed: absorption and emission features are (spectra, features) @ (features, pixels) products
with profiles precomputed on a rest-frame log-wavelength grid. Velocity pixels make the
instrument (and any velocity broadening) one Gaussian kernel per broadening bin, so each profile
set is built once and cached; radial velocity or redshift is one interpolation to the observed
grid. Everything works on chunks of ``CHUNK_SIZE`` spectra in float32.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy.ndimage import gaussian_filter1d

from astrospectra_jax.data import recipe, tasks


C_KMS = 299792.458
RESOLUTION = 1800.0
SIGMA_INSTRUMENT_KMS = C_KMS / RESOLUTION / (2.0 * np.sqrt(2.0 * np.log(2.0)))  # ~70.7 km/s
CHUNK_SIZE = 2048
_HC_OVER_K = 1.438777e8  # Angstrom * Kelvin
_LAM = recipe.GRID.astype(np.float64)
_LAM32 = _LAM.astype(np.float32)
_LN10 = np.log(10.0)


@dataclasses.dataclass(frozen=True)
class SimulatedSpectra:
    """A batch of simulated spectra on ``recipe.GRID`` with labels and physical parameters."""

    flux: np.ndarray  # (n, 3601) float32
    labels: np.ndarray  # (n,) int32, index into class_names
    task: str
    class_names: tuple[str, ...]
    params: dict[str, np.ndarray]  # (n,) each; NaN where a parameter does not apply


def simulate(task: str, n: int, seed: int, *, class_fractions=None,
             chunk_size: int = CHUNK_SIZE) -> SimulatedSpectra:
    """Simulate ``n`` LAMOST-like spectra for ``task`` ("v1": STAR/GALAXY/QSO, "v2": F/G/K).

    Class counts follow ``class_fractions`` (default: equal) exactly up to rounding, in random
    order. The same ``seed`` gives the same spectra.
    """
    names = tasks.class_names(task)
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    fractions = _class_fractions(class_fractions, len(names))
    rng = np.random.default_rng(seed)
    counts = _largest_remainder(fractions, n)
    labels = rng.permutation(np.repeat(np.arange(len(names)), counts)).astype(np.int32)
    flux = np.empty((n, recipe.GRID_SIZE), np.float32)
    chunks = []
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        flux[start:stop], chunk_params = _simulate_chunk(task, labels[start:stop], rng)
        chunks.append((stop - start, chunk_params))
    return SimulatedSpectra(flux=flux, labels=labels, task=task, class_names=names,
                            params=_merge_params(chunks))


def _class_fractions(class_fractions, k: int) -> np.ndarray:
    if class_fractions is None:
        return np.full(k, 1.0 / k)
    fractions = np.asarray(class_fractions, dtype=np.float64)
    if fractions.shape != (k,) or not np.all(np.isfinite(fractions)) or np.any(fractions < 0) \
            or fractions.sum() <= 0:
        raise ValueError(f"class_fractions must be {k} non-negative numbers with a positive sum, "
                         f"got {class_fractions!r}")
    return fractions / fractions.sum()


def _largest_remainder(fractions: np.ndarray, n: int) -> np.ndarray:
    exact = fractions * n
    counts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return counts


def _merge_params(chunks: list[tuple[int, dict]]) -> dict[str, np.ndarray]:
    """Concatenate per-chunk parameter dicts; a key missing from a chunk is NaN there."""
    keys = sorted({key for _, chunk in chunks for key in chunk})
    return {key: np.concatenate([chunk.get(key, np.full(size, np.nan)) for size, chunk in chunks])
            for key in keys}


def _simulate_chunk(task: str, labels: np.ndarray, rng) -> tuple[np.ndarray, dict]:
    n = labels.size
    flux = np.empty((n, recipe.GRID_SIZE), np.float32)
    params: dict[str, np.ndarray] = {}
    if task == "v2":
        groups = [(np.arange(n), "star", _type_teff_for_fgk(labels, rng))]
    else:
        groups = [(np.flatnonzero(labels == c), kind, None)
                  for c, kind in enumerate(("star", "galaxy", "qso"))]
    for index, kind, type_teff in groups:
        if index.size == 0:
            continue
        if kind == "star":
            if type_teff is None:
                type_teff = _type_teff_for_any_star(index.size, rng)
            intrinsic, group_params = _stars(type_teff, rng)
        elif kind == "galaxy":
            intrinsic, group_params = _galaxies(index.size, rng)
        else:
            intrinsic, group_params = _quasars(index.size, rng)
        flux[index], observing_params = _observe(intrinsic, kind, rng)
        for key, value in {**group_params, **observing_params}.items():
            params.setdefault(key, np.full(n, np.nan))[index] = value
    return flux, params


# ----------------------------------------------------------------------------------------------
# Wavelengths, continua, dust

def _air_to_vacuum(air):
    """Air -> vacuum wavelength (Angstrom), Ciddor/Morton refractive index (one iteration)."""
    air = np.asarray(air, dtype=np.float64)
    s2 = (1e4 / air) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return np.where(air > 2000.0, air * n, air)


@functools.lru_cache(maxsize=None)
def _log_grid(lam_min: float, lam_max: float, step_kms: float) -> np.ndarray:
    """Rest-frame wavelengths with constant velocity steps (read-only)."""
    step = np.log1p(step_kms / C_KMS)
    size = int(np.ceil(np.log(lam_max / lam_min) / step)) + 1
    grid = lam_min * np.exp(step * np.arange(size))
    grid.flags.writeable = False
    return grid


def _to_observed(rest, rest_grid: np.ndarray, one_plus_z) -> np.ndarray:
    """Linear interpolation of rest-frame rows (n, M) on a log grid onto the observed GRID."""
    step = np.log(rest_grid[1] / rest_grid[0])
    base = ((np.log(_LAM) - np.log(rest_grid[0])) / step).astype(np.float32)
    shift = (np.log(np.asarray(one_plus_z, dtype=np.float64)) / step).astype(np.float32)
    pos = base[None, :] - shift[:, None]
    lo = np.clip(pos.astype(np.int32), 0, rest_grid.size - 2)
    frac = np.clip(pos - lo, 0.0, 1.0)
    flat = rest.reshape(-1)
    lo = lo + (np.arange(rest.shape[0], dtype=np.int32) * rest_grid.size)[:, None]
    left = flat[lo]
    return left + frac * (flat[lo + 1] - left)


def _planck_ratio(lam, t_col):
    """B_lambda(T) / B_5500(T): lam (M,) Angstrom, t_col (n,) -> (n, M) float32."""
    lam = np.asarray(lam, dtype=np.float32)
    x = np.minimum((_HC_OVER_K / t_col).astype(np.float32)[:, None] / lam[None, :], 80.0)
    x_ref = np.expm1(_HC_OVER_K / (5500.0 * t_col)).astype(np.float32)
    # exp(x) - 1 rather than expm1: x > 0.5 here, and exp is much faster in float32.
    return ((5500.0 / lam) ** 5)[None, :] * x_ref[:, None] / (np.exp(x) - 1.0)


def _ccm89(lam, r_v: float = 3.1):
    """Cardelli, Clayton & Mathis (1989) A_lambda / A_V, optical and infrared (>3030 A)."""
    x = 1e4 / np.asarray(lam, dtype=np.float64)
    y = x - 1.82
    a_opt = 1 + y * (0.17699 + y * (-0.50447 + y * (-0.02427 + y * (0.72085 + y * (
        0.01979 + y * (-0.77530 + y * 0.32999))))))
    b_opt = y * (1.41338 + y * (2.28305 + y * (1.07233 + y * (-5.38434 + y * (
        -0.62251 + y * (5.30260 + y * -2.09002))))))
    infrared = x < 1.1
    a = np.where(infrared, 0.574 * x ** 1.61, a_opt)
    b = np.where(infrared, -0.527 * x ** 1.61, b_opt)
    return a + b / r_v


def _calzetti(lam):
    """Calzetti et al. (2000) k(lambda) = A_lambda / E(B-V)_stars (held below 1000 A)."""
    mu = np.maximum(np.asarray(lam, dtype=np.float64), 1000.0) / 1e4
    blue = 2.659 * (-2.156 + 1.509 / mu - 0.198 / mu ** 2 + 0.011 / mu ** 3) + 4.05
    red = 2.659 * (-1.857 + 1.040 / mu) + 4.05
    return np.maximum(np.where(mu < 0.63, blue, red), 0.0)


def _smc(lam):
    """SMC-like extinction A_lambda / E(B-V): power-law fit (Prevot et al. 1984)."""
    return 1.39 * (np.asarray(lam, dtype=np.float64) / 1e4) ** -1.2


# ----------------------------------------------------------------------------------------------
# Absorption features: strength tables in Teff

@dataclasses.dataclass(frozen=True)
class _Feature:
    """Lines (air A, relative weight) sharing one shape and one strength table in Teff.

    ``strength`` is the equivalent width (A) of a weight-1 line for shapes "gauss" (``width`` =
    intrinsic sigma) and "lorentz" (``width`` = HWHM), or the peak optical depth for molecular
    bands "band_red" / "band_blue" (sharp head, fading to the red / blue over ``width``);
    widths are in A at 5000 A and scale with wavelength. ``metal`` is d log10(strength) /
    d[Fe/H]; ``giant`` the strength factor at log g = 2.5 relative to log g = 4.5.
    """

    name: str
    lines: tuple[tuple[float, float], ...]
    shape: str
    width: float
    strength: tuple[float, ...]
    metal: float = 0.0
    giant: float = 1.0


TEFF_NODES = np.array(
    [3000, 3500, 4000, 4500, 5000, 5500, 6000, 6500, 7000, 7500, 8500, 10000, 12000, 20000],
    dtype=np.float64)


def _f(*values):
    """A table over TEFF_NODES."""
    if len(values) != TEFF_NODES.size:
        raise ValueError(f"a Teff table needs {TEFF_NODES.size} values, got {len(values)}")
    return tuple(float(v) for v in values)


_BALMER = ((4861.33, 1.0), (4340.46, 0.95), (4101.74, 0.9), (3970.07, 0.85),
           (3889.05, 0.75), (3835.38, 0.65), (3797.90, 0.55), (3770.63, 0.45), (3750.15, 0.38),
           (3734.37, 0.3), (3721.94, 0.25), (3711.97, 0.2), (3703.86, 0.15), (3697.15, 0.1))
_PASCHEN = ((8467.25, 0.6), (8502.48, 0.7), (8545.38, 0.8), (8598.39, 0.85), (8665.02, 0.9),
            (8750.47, 1.0), (8862.78, 1.0), (9014.91, 1.0), (9229.01, 1.0))
# Strong lines of the solar spectrum (air A, relative strength), grouped by how they respond to
# temperature: low-excitation neutral lines (resonance and < ~1.6 eV: Ti I, Cr I, Mn I, Ca I,
# Al I, low Fe I) strengthen steeply in cool stars; higher-excitation neutral lines moderately;
# ionised lines (Fe II, Ti II, Sr II, Ba II, Mg II, Si II) peak in F-G stars and giants.
_NEUTRAL_LOW_EP = (
    (3820.43, 1.0), (3825.88, 0.8), (3859.91, 0.9), (3878.57, 0.5), (3886.28, 0.6),
    (3899.71, 0.5), (3920.26, 0.5), (3922.91, 0.5), (3927.92, 0.5), (3930.30, 0.5),
    (4045.81, 1.0), (4063.59, 0.8), (4071.74, 0.7), (4143.87, 0.5), (4202.03, 0.5),
    (4216.18, 0.4), (4260.47, 0.5), (4271.76, 0.7), (4307.90, 0.7), (4325.76, 0.7),
    (4383.55, 1.0), (4404.75, 0.9), (4415.12, 0.6), (4427.31, 0.4), (4461.65, 0.4),
    (3944.01, 0.5), (3961.52, 0.55), (4254.33, 0.6), (4274.80, 0.55), (4289.72, 0.45),
    (5204.51, 0.4), (5206.04, 0.5), (5208.42, 0.5), (5409.78, 0.3), (4030.75, 0.5),
    (4033.06, 0.45), (4034.48, 0.4), (4754.04, 0.3), (4783.43, 0.3), (4823.52, 0.3),
    (4533.24, 0.35), (4534.78, 0.3), (4535.57, 0.3), (4981.73, 0.35), (4991.07, 0.35),
    (4999.50, 0.35), (5173.74, 0.25), (5192.97, 0.25), (5210.39, 0.3), (4302.53, 0.35),
    (4318.65, 0.3), (4425.44, 0.3), (4434.96, 0.4), (4435.69, 0.3), (4454.78, 0.45),
    (5261.71, 0.25), (5265.56, 0.3), (5270.27, 0.35), (5581.97, 0.25), (5588.75, 0.35),
    (5590.12, 0.25), (5594.46, 0.3), (5598.49, 0.3), (5601.28, 0.25), (5602.85, 0.25),
    (5857.45, 0.3), (6102.72, 0.35), (6122.22, 0.5), (6162.17, 0.55), (6169.04, 0.25),
    (6169.56, 0.25), (6439.08, 0.45), (6449.81, 0.3), (6462.57, 0.35), (6471.66, 0.25),
    (6493.78, 0.35), (6499.65, 0.25), (6717.68, 0.35), (7148.15, 0.3), (7326.15, 0.25),
    (4607.33, 0.2), (5682.63, 0.25), (5688.21, 0.3), (6154.23, 0.15), (6160.75, 0.2),
    (6498.94, 0.2), (6393.60, 0.3), (6430.85, 0.3), (6421.35, 0.25), (6750.15, 0.2),
    (5166.28, 0.35), (5110.41, 0.35), (5068.77, 0.25), (5079.74, 0.3), (4994.13, 0.3),
    (5041.07, 0.3), (5012.07, 0.3), (5225.53, 0.2), (5247.05, 0.2), (5250.21, 0.25),
    (5254.96, 0.2), (5269.54, 0.6), (5328.04, 0.5), (5397.13, 0.4), (5405.77, 0.4),
    (5429.70, 0.4), (5434.52, 0.35), (5446.92, 0.4), (5455.61, 0.35), (5501.47, 0.3),
    (5506.78, 0.3), (6065.48, 0.3), (6137.69, 0.3), (6173.34, 0.25), (6200.31, 0.25),
    (6213.43, 0.25), (6219.28, 0.25), (6265.13, 0.25), (6280.62, 0.2), (6297.79, 0.25),
    (6335.33, 0.25), (6358.69, 0.2), (7511.02, 0.15), (7937.13, 0.2), (7945.85, 0.2),
    (8327.06, 0.3), (8387.77, 0.3), (8468.41, 0.25), (8514.07, 0.25), (8611.80, 0.2),
    (8621.60, 0.2), (8674.75, 0.25), (8688.62, 0.35), (8824.22, 0.3))
_NEUTRAL_HIGH_EP = (
    (3815.84, 0.8), (3841.05, 0.7), (3856.37, 0.7), (3865.52, 0.5), (3872.50, 0.6),
    (3895.66, 0.5), (3906.48, 0.5), (3969.26, 0.5), (4005.24, 0.6), (4009.71, 0.4),
    (4014.53, 0.4), (4021.87, 0.4), (4067.98, 0.4), (4084.49, 0.4), (4107.49, 0.4),
    (4118.55, 0.5), (4132.06, 0.6), (4134.68, 0.4), (4147.67, 0.4), (4154.50, 0.4),
    (4156.80, 0.4), (4181.76, 0.45), (4184.89, 0.4), (4187.04, 0.45), (4187.80, 0.45),
    (4191.43, 0.4), (4198.30, 0.45), (4199.10, 0.45), (4210.34, 0.4), (4219.36, 0.4),
    (4222.21, 0.4), (4227.43, 0.4), (4233.60, 0.4), (4235.94, 0.45), (4238.81, 0.35),
    (4247.43, 0.4), (4250.12, 0.5), (4250.79, 0.5), (4282.40, 0.4), (4294.13, 0.45),
    (4299.24, 0.4), (4315.08, 0.4), (4337.05, 0.35), (4352.74, 0.4), (4369.77, 0.35),
    (4375.93, 0.35), (4388.41, 0.3), (4408.42, 0.35), (4422.57, 0.35), (4430.61, 0.35),
    (4442.34, 0.35), (4443.19, 0.3), (4447.72, 0.35), (4459.12, 0.35), (4466.55, 0.35),
    (4476.02, 0.35), (4482.17, 0.35), (4489.74, 0.3), (4494.56, 0.35), (4528.61, 0.4),
    (4531.15, 0.35), (4592.65, 0.3), (4602.94, 0.3), (4647.43, 0.3), (4707.27, 0.3),
    (4736.77, 0.3), (4871.32, 0.45), (4872.14, 0.4), (4890.76, 0.4), (4891.49, 0.45),
    (4903.31, 0.35), (4918.99, 0.35), (4920.50, 0.5), (4924.77, 0.3), (4938.81, 0.3),
    (4939.69, 0.3), (4957.60, 0.5), (4966.09, 0.3), (5001.86, 0.3), (5006.12, 0.35),
    (5041.76, 0.3), (5049.82, 0.35), (5051.63, 0.3), (5074.75, 0.3), (5079.22, 0.3),
    (5083.34, 0.3), (5098.70, 0.3), (5107.45, 0.3), (5123.72, 0.3), (5127.36, 0.3),
    (5133.69, 0.35), (5137.38, 0.3), (5139.25, 0.35), (5139.46, 0.35), (5142.93, 0.3),
    (5150.84, 0.3), (5151.91, 0.3), (5162.27, 0.35), (5191.46, 0.4), (5192.34, 0.4),
    (5194.94, 0.3), (5198.71, 0.3), (5202.34, 0.35), (5215.18, 0.3), (5216.27, 0.3),
    (5227.19, 0.5), (5232.94, 0.45), (5242.49, 0.25), (5250.65, 0.25), (5263.31, 0.3),
    (5266.56, 0.35), (5281.79, 0.3), (5283.62, 0.3), (5302.30, 0.3), (5307.36, 0.25),
    (5324.18, 0.35), (5339.93, 0.3), (5341.02, 0.3), (5367.47, 0.3), (5369.96, 0.3),
    (5371.49, 0.4), (5383.37, 0.3), (5393.17, 0.25), (5415.20, 0.3), (5424.07, 0.3),
    (5497.52, 0.3), (5569.62, 0.3), (5572.84, 0.3), (5576.09, 0.25), (5586.76, 0.3),
    (5615.64, 0.35), (5624.54, 0.25), (5658.82, 0.25), (5662.52, 0.2), (6136.61, 0.25),
    (6191.56, 0.25), (6230.72, 0.25), (6246.32, 0.25), (6252.56, 0.25), (6301.50, 0.25),
    (6302.49, 0.2), (6318.02, 0.2), (6336.82, 0.2), (6355.03, 0.2), (6400.00, 0.25),
    (6411.65, 0.25), (6419.95, 0.2), (6494.98, 0.3), (6546.24, 0.2), (6592.91, 0.2),
    (6677.99, 0.25), (4167.27, 0.35), (4702.99, 0.4), (5528.41, 0.45), (5711.09, 0.3),
    (8717.83, 0.2), (8736.02, 0.25), (8806.76, 0.5), (5476.91, 0.35), (5035.36, 0.25),
    (6643.63, 0.2), (6767.77, 0.2), (3905.52, 0.5), (4102.94, 0.3), (5948.54, 0.2),
    (4571.10, 0.35), (3829.35, 0.7), (3832.30, 0.8), (3838.29, 0.9))
_IONISED_METALS = (
    (4233.17, 0.5), (4923.92, 0.7), (5018.44, 0.8), (5169.03, 0.8), (5316.61, 0.5),
    (4296.57, 0.3), (4303.17, 0.35), (4351.77, 0.35), (4416.83, 0.3), (4489.19, 0.25),
    (4491.40, 0.25), (4508.29, 0.3), (4515.34, 0.3), (4520.22, 0.3), (4522.63, 0.35),
    (4555.89, 0.3), (4576.34, 0.25), (4583.84, 0.4), (4620.52, 0.25), (4629.34, 0.3),
    (5197.58, 0.35), (5234.62, 0.35), (5276.00, 0.35), (5284.10, 0.25), (5325.55, 0.25),
    (5362.87, 0.25), (5425.26, 0.25), (6149.25, 0.2), (6238.39, 0.2), (6247.56, 0.25),
    (6432.68, 0.2), (6456.38, 0.25), (6516.08, 0.25),
    (4300.05, 0.35), (4395.03, 0.5), (4443.80, 0.5), (4468.49, 0.4), (4501.27, 0.45),
    (4533.97, 0.45), (4549.62, 0.5), (4563.76, 0.4), (4571.97, 0.5), (4589.96, 0.3),
    (4077.71, 0.8), (4215.52, 0.6), (4554.03, 0.6), (4934.08, 0.5), (5853.68, 0.2),
    (6141.71, 0.4), (6496.90, 0.4), (4374.94, 0.3), (4246.82, 0.35), (5526.79, 0.2),
    (4481.13, 0.6), (6347.11, 0.3), (6371.37, 0.25))
_TIO = ((4761.0, 0.5), (4954.0, 0.6), (5167.0, 0.7), (5448.0, 0.8), (5847.0, 0.7),
        (6159.0, 0.9), (6651.0, 0.7), (7054.0, 1.0), (7589.0, 0.8), (8432.0, 0.5),
        (8859.0, 0.4))
_MAGNESIUM_B = ((5167.32, 0.55), (5172.68, 1.0), (5183.60, 1.15))
_SODIUM_D = ((5889.95, 1.0), (5895.92, 0.8))
_CALCIUM_TRIPLET = ((8498.02, 0.45), (8542.09, 1.0), (8662.14, 0.8))

STELLAR_FEATURES = (
    _Feature("balmer_core", _BALMER, "gauss", 0.6,
             _f(0.1, 0.2, 0.35, 0.55, 0.85, 1.2, 1.5, 1.8, 2.1, 2.4, 2.7, 2.8, 2.4, 1.2)),
    # H-alpha weakens less towards cool stars than the higher series lines.
    _Feature("h_alpha_core", ((6562.80, 1.0),), "gauss", 0.6,
             _f(0.3, 0.5, 0.75, 1.0, 1.25, 1.45, 1.6, 1.7, 1.85, 2.0, 2.3, 2.4, 2.0, 1.0)),
    _Feature("h_alpha_wings", ((6562.80, 1.0),), "lorentz", 3.0,
             _f(0.0, 0.0, 0.1, 0.25, 0.45, 0.8, 1.3, 2.2, 3.0, 3.8, 5.0, 5.5, 4.0, 2.0), giant=0.7),
    _Feature("balmer_wing_narrow", _BALMER, "lorentz", 2.5,
             _f(0.0, 0.0, 0.1, 0.3, 0.7, 1.3, 2.2, 3.4, 4.3, 4.8, 4.5, 3.5, 2.5, 1.2), giant=0.7),
    _Feature("balmer_wing_broad", _BALMER, "lorentz", 10.0,
             _f(0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.8, 2.0, 3.5, 5.5, 8.0, 9.0, 6.0, 2.5), giant=0.5),
    _Feature("paschen", _PASCHEN, "lorentz", 2.0,
             _f(0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.15, 0.35, 0.6, 0.9, 1.3, 1.4, 1.0, 0.4)),
    _Feature("ca2_k_core", ((3933.66, 1.0),), "gauss", 0.8,
             _f(3, 3.5, 4, 4.0, 3.6, 2.8, 2.1, 1.6, 1.3, 1.0, 0.7, 0.4, 0.2, 0.05), metal=0.3),
    _Feature("ca2_h_core", ((3968.47, 1.0),), "gauss", 0.8,
             _f(2.5, 3, 3.4, 3.4, 3.0, 2.4, 1.8, 1.4, 1.1, 0.9, 0.6, 0.3, 0.15, 0.05), metal=0.3),
    _Feature("ca2_hk_wings", ((3933.66, 1.0), (3968.47, 0.8)), "lorentz", 4.0,
             _f(6, 8, 10, 12, 12, 11, 9, 6, 4, 2.5, 1, 0.3, 0.1, 0.0), metal=0.4, giant=0.8),
    _Feature("ca1_4227", ((4226.73, 1.0),), "gauss", 0.6,
             _f(7, 5.5, 3.8, 2.6, 1.8, 1.2, 0.8, 0.5, 0.3, 0.2, 0.1, 0.05, 0.0, 0.0),
             metal=0.5, giant=0.8),
    _Feature("g_band", ((4314.0, 1.0),), "band_blue", 22.0,
             _f(0.3, 0.45, 0.6, 0.65, 0.6, 0.45, 0.28, 0.15, 0.08, 0.04, 0.0, 0, 0, 0), metal=0.5),
    _Feature("cn", ((3883.0, 1.0), (4216.0, 0.7)), "band_blue", 40.0,
             _f(0.1, 0.15, 0.18, 0.2, 0.16, 0.08, 0.03, 0.0, 0, 0, 0, 0, 0, 0), metal=1.0,
             giant=4.0),
    _Feature("mg_b_core", _MAGNESIUM_B, "gauss", 0.5,
             _f(3, 3, 2.8, 2.3, 1.7, 1.3, 1.0, 0.75, 0.5, 0.35, 0.2, 0.1, 0.05, 0.0), metal=0.4),
    _Feature("mg_b_wings", _MAGNESIUM_B, "lorentz", 2.0,
             _f(4, 5, 5, 4.0, 2.8, 1.3, 0.5, 0.2, 0.1, 0, 0, 0, 0, 0), metal=0.5, giant=0.2),
    _Feature("mgh", ((5211.0, 1.0),), "band_blue", 300.0,
             _f(0.6, 0.6, 0.55, 0.45, 0.25, 0.07, 0, 0, 0, 0, 0, 0, 0, 0), metal=0.5, giant=0.1),
    _Feature("na_d_core", _SODIUM_D, "gauss", 0.5,
             _f(3.0, 3.0, 2.7, 2.2, 1.5, 1.1, 0.75, 0.5, 0.3, 0.15, 0.1, 0.05, 0.05, 0.0),
             metal=0.4),
    _Feature("na_d_wings", _SODIUM_D, "lorentz", 2.0,
             _f(8, 8, 6.5, 4.0, 1.5, 0.7, 0.3, 0.1, 0, 0, 0, 0, 0, 0), metal=0.5, giant=0.3),
    _Feature("neutral_low_ep", _NEUTRAL_LOW_EP, "gauss", 0.3,
             _f(3.6, 3.6, 3.4, 2.9, 2.0, 1.15, 0.7, 0.42, 0.25, 0.14, 0.06, 0.02, 0.01, 0.0),
             metal=0.8),
    _Feature("neutral_high_ep", _NEUTRAL_HIGH_EP, "gauss", 0.3,
             _f(2.0, 2.1, 2.1, 1.9, 1.55, 1.1, 0.78, 0.5, 0.33, 0.2, 0.09, 0.03, 0.01, 0.0),
             metal=0.8),
    _Feature("ionised_metals", _IONISED_METALS, "gauss", 0.3,
             _f(0.4, 0.5, 0.6, 0.75, 0.9, 1.0, 1.0, 0.95, 0.85, 0.7, 0.45, 0.25, 0.1, 0.0),
             metal=0.7, giant=1.6),
    _Feature("ca2_triplet_core", _CALCIUM_TRIPLET, "gauss", 0.6,
             _f(2, 2.1, 2.2, 2.25, 2.25, 2.2, 2.05, 1.8, 1.5, 1.1, 0.6, 0.3, 0.1, 0.0),
             metal=0.3, giant=1.3),
    _Feature("ca2_triplet_wings", _CALCIUM_TRIPLET, "lorentz", 3.0,
             _f(1, 1.5, 1.8, 1.8, 1.6, 1.3, 1.0, 0.6, 0.3, 0.1, 0, 0, 0, 0), metal=0.3),
    _Feature("o1_7774", ((7771.94, 1.0), (7774.17, 0.8), (7775.39, 0.6)), "gauss", 0.5,
             _f(0, 0, 0, 0, 0.0, 0.02, 0.05, 0.1, 0.18, 0.3, 0.5, 0.5, 0.35, 0.2), giant=1.5),
    _Feature("he1", ((4026.19, 0.8), (4471.48, 1.0), (5875.62, 0.8), (6678.15, 0.6)), "gauss",
             0.8, _f(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.05, 0.4, 1.0)),
    _Feature("k1", ((7664.90, 1.0), (7698.96, 0.8)), "gauss", 0.5,
             _f(3, 2.5, 1.5, 0.9, 0.5, 0.3, 0.15, 0.05, 0, 0, 0, 0, 0, 0), metal=0.3, giant=0.6),
    _Feature("na1_8190", ((8183.26, 0.9), (8194.82, 1.0)), "gauss", 0.6,
             _f(3, 2.8, 2.0, 1.2, 0.6, 0.3, 0.12, 0.05, 0, 0, 0, 0, 0, 0), metal=0.3, giant=0.4),
    _Feature("mg2_uv", ((2795.53, 1.0), (2802.71, 0.9), (2852.13, 0.6)), "lorentz", 3.0,
             _f(15, 15, 14, 12, 10, 8, 6, 5, 4.5, 4, 3.5, 3, 2, 1), metal=0.3),
    _Feature("tio", _TIO, "band_red", 120.0,
             _f(1.6, 0.9, 0.35, 0.06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), metal=0.3),
    _Feature("cah", ((6382.0, 0.7), (6750.0, 1.0)), "band_red", 80.0,
             _f(0.5, 0.2, 0.03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), giant=0.1),
)

# Smooth continuum terms (not lines): blue blanketing by unresolved metal lines, and the Balmer
# jump below 3646 A; optical depth scales at TEFF_NODES.
_BLANKETING = _f(1.2, 1.05, 0.9, 0.72, 0.47, 0.24, 0.12, 0.05, 0.03, 0.02, 0.02, 0.015, 0.015,
                 0.01)
_BALMER_JUMP = _f(0, 0, 0, 0, 0.02, 0.05, 0.1, 0.15, 0.22, 0.3, 0.45, 0.5, 0.42, 0.22)
# The optical continuum of FGK stars forms below tau = 1 where T > Teff: it is bluer than a
# Planck curve at Teff. Colour temperature / Teff at TEFF_NODES.
_COLOUR_TEMPERATURE = _f(1.0, 1.02, 1.07, 1.10, 1.11, 1.11, 1.11, 1.11, 1.12, 1.13, 1.17, 1.2,
                         1.15, 1.0)


def _line_rows(grid: np.ndarray, features) -> np.ndarray:
    """Intrinsic (unbroadened) profiles, one row per feature, on a log grid."""
    rows = np.zeros((len(features), grid.size))
    dlam = grid * np.log(grid[1] / grid[0])
    for k, feature in enumerate(features):
        for air, weight in feature.lines:
            centre = float(_air_to_vacuum(air))
            rows[k] += weight * _shape(grid, dlam, centre, feature.width * centre / 5000.0,
                                       feature.shape)
    return rows


def _shape(grid, dlam, centre, width, shape):
    """One profile: unit area (A) for lines, unit peak for bands."""
    offset = grid - centre
    if shape == "band_red":
        return np.where(offset >= 0, np.exp(-offset / width), 0.0)
    if shape == "band_blue":
        return np.where(offset <= 0, np.exp(offset / width), 0.0)
    if shape == "gauss":
        profile = np.exp(-0.5 * (offset / width) ** 2)
    elif shape == "lorentz":
        profile = np.where(np.abs(offset) < 60 * width, 1.0 / (1.0 + (offset / width) ** 2), 0.0)
    else:
        raise ValueError(f"unknown profile shape {shape!r}")
    area = np.sum(profile * dlam)
    return profile / area if area > 0 else profile


def _geometric_bins(lo: float, hi: float, ratio: float = 1.06) -> tuple[float, ...]:
    """Broadening bins spaced by ``ratio``: the nearest bin is within 3% of any width."""
    count = int(np.ceil(np.log(hi / lo) / np.log(ratio))) + 1
    return tuple(float(v) for v in np.geomspace(lo, hi, count))


@functools.lru_cache(maxsize=None)
def _intrinsic_rows(kind: str, grid_key: tuple) -> np.ndarray:
    rows = _INTRINSIC_ROWS[kind](_log_grid(*grid_key))
    rows.flags.writeable = False
    return rows


@functools.lru_cache(maxsize=None)
def _broadened_basis(kind: str, grid_key: tuple, sigma_kms: float) -> np.ndarray:
    """(features, pixels) float32 profiles of ``kind`` broadened by a Gaussian (km/s)."""
    rows = gaussian_filter1d(_intrinsic_rows(kind, grid_key), sigma_kms / grid_key[2], axis=1,
                             mode="constant", truncate=5.0)
    basis = np.ascontiguousarray(rows, dtype=np.float32)
    basis.flags.writeable = False
    return basis


def _render(amplitudes, widths, bins, basis_for) -> np.ndarray:
    """Row i = amplitudes[i] @ basis_for(bin nearest widths[i]); (n, pixels) float32."""
    bins = np.asarray(bins)
    nearest = np.abs(np.log(np.asarray(widths, dtype=np.float64))[:, None]
                     - np.log(bins)[None, :]).argmin(axis=1)
    amplitudes = np.asarray(amplitudes, dtype=np.float32)
    out = None
    for b in np.unique(nearest):
        basis = basis_for(float(bins[b]))
        if out is None:
            out = np.empty((amplitudes.shape[0], basis.shape[1]), np.float32)
        rows = np.flatnonzero(nearest == b)
        if rows.size == amplitudes.shape[0]:
            np.matmul(amplitudes, basis, out=out)
        else:
            out[rows] = amplitudes[rows] @ basis
    return out


# ----------------------------------------------------------------------------------------------
# Stars

_STAR_GRID = (3600.0, 9250.0, 40.0)
# Total Gaussian broadening (instrument + rotation or velocity dispersion) of absorption
# features, km/s; profile sets are built on first use.
_ABSORPTION_BINS = _geometric_bins(SIGMA_INSTRUMENT_KMS, 450.0)
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


def _type_teff_for_fgk(labels, rng):
    lo, hi = np.array(_FGK_RANGES).T
    a, b = np.array(_FGK_SHAPES).T
    teff = lo[labels] + (hi - lo)[labels] * rng.beta(a[labels], b[labels])
    return teff + rng.normal(0.0, TEFF_CLASS_SCATTER, labels.size)


def _type_teff_for_any_star(n, rng):
    shares = np.array([t[3] for t in _SPECTRAL_TYPES])
    kind = rng.choice(len(shares), size=n, p=shares / shares.sum())
    lo = np.array([t[1] for t in _SPECTRAL_TYPES])[kind]
    hi = np.array([t[2] for t in _SPECTRAL_TYPES])[kind]
    return rng.uniform(lo, hi) + rng.normal(0.0, TEFF_CLASS_SCATTER, n)


def _metallicity(n, rng):
    share, mean, sigma = np.array(_METALLICITY_POPULATIONS).T
    population = rng.choice(share.size, size=n, p=share / share.sum())
    return np.clip(rng.normal(mean[population], sigma[population]), -2.5, 0.5)


def _stellar_strengths(teff, logg, feh, features=STELLAR_FEATURES):
    """(n, K) feature strengths: Teff tables x metallicity x gravity."""
    teff = np.asarray(teff, dtype=np.float64)
    table = np.array([f.strength for f in features])
    metal = np.array([f.metal for f in features])
    giant = np.array([f.giant for f in features])
    base = np.stack([np.interp(teff, TEFF_NODES, row) for row in table], axis=1)
    low_gravity = np.clip((4.5 - np.asarray(logg))[:, None] / 2.0, 0.0, 1.5)
    metallicity = 10.0 ** (metal[None, :] * np.asarray(feh)[:, None])
    return base * metallicity * giant[None, :] ** low_gravity


def _stellar_continuum(lam, teff, feh) -> np.ndarray:
    """(n, M) float32, 1 at 5500 A: Planck at the colour temperature x blue blanketing x
    Balmer jump."""
    lam = np.asarray(lam, dtype=np.float64)
    teff = np.asarray(teff, dtype=np.float64)
    t_col = teff * np.interp(teff, TEFF_NODES, _COLOUR_TEMPERATURE)
    blanket = np.interp(teff, TEFF_NODES, _BLANKETING) * 10.0 ** (0.5 * np.asarray(feh))
    jump = _LN10 * np.interp(teff, TEFF_NODES, _BALMER_JUMP)
    # Unresolved metal lines crowd towards the blue: optical depth rising below ~4500 A, and
    # saturating below ~4000 A where the crowded lines are black.
    crowding = np.clip((4500.0 / lam) ** 5 - 1.0, 0.0, None)
    crowding = np.minimum(crowding, 0.75 + 0.25 * (crowding - 0.75))
    shapes = np.stack([crowding,
                       1.0 / (1.0 + np.exp((lam - 3646.0) / 15.0))]).astype(np.float32)
    depth = np.stack([blanket, jump], axis=1).astype(np.float32) @ shapes
    return _planck_ratio(lam, t_col) * np.exp(-depth)


def _stellar_population(grid_key, teff, logg, feh, broadening_kms) -> np.ndarray:
    """Rest-frame spectra (n, M) on a log grid: continuum x exp(-absorption), 1 at 5500 A."""
    tau = _render(_stellar_strengths(teff, logg, feh), broadening_kms, _ABSORPTION_BINS,
                  functools.partial(_broadened_basis, "stellar", grid_key))
    return _stellar_continuum(_log_grid(*grid_key), teff, feh) * np.exp(-tau)


def _stars(type_teff, rng):
    n = type_teff.size
    type_teff = np.clip(type_teff, 2900.0, 30000.0)
    giant = rng.random(n) < np.interp(type_teff, _TYPE_TEFF, _GIANT_SHARE)
    feh = _metallicity(n, rng)
    metal_shift = TYPE_TEFF_PER_DEX * feh * (type_teff < 7500.0)
    teff = type_teff - giant * np.interp(type_teff, _TYPE_TEFF, _GIANT_TEFF_OFFSET) + metal_shift
    logg = np.where(giant, rng.uniform(1.8, 3.4, n), rng.uniform(3.9, 4.7, n))
    # Hot stars rotate faster; the rotation kernel (sigma ~ v sin i / 2) adds in quadrature.
    vsini = rng.exponential(np.interp(teff, [5500.0, 6500.0, 8000.0], [3.0, 30.0, 90.0]))
    broadening = np.hypot(SIGMA_INSTRUMENT_KMS, 0.5 * vsini)
    rv = rng.normal(0.0, 40.0, n) + rng.normal(0.0, 30.0, n) * (rng.random(n) < 0.3)
    tau = _render(_stellar_strengths(teff, logg, feh), broadening, _ABSORPTION_BINS,
                  functools.partial(_broadened_basis, "stellar", _STAR_GRID))
    tau = _to_observed(tau, _log_grid(*_STAR_GRID), 1.0 + rv / C_KMS)
    # The continuum is smooth: evaluating it at the observed wavelengths is exact to ~v/c.
    observed = _stellar_continuum(_LAM, teff, feh) * np.exp(-tau)
    params = {"teff": teff, "type_teff": type_teff, "logg": logg, "feh": feh, "vsini": vsini,
              "rv_kms": rv, "redshift": rv / C_KMS}
    return observed, params


# ----------------------------------------------------------------------------------------------
# Galaxies

_GALAXY_GRID = (2300.0, 9300.0, 60.0)
_GAS_BINS = _geometric_bins(SIGMA_INSTRUMENT_KMS, 450.0)
# Nebular lines (vacuum A).
_NEBULAR_LINES = (("oii_3726", 3727.09), ("oii_3729", 3729.88), ("neiii_3869", 3869.86),
                  ("hdelta", 4102.89), ("hgamma", 4341.68), ("hbeta", 4862.68),
                  ("oiii_4959", 4960.30), ("oiii_5007", 5008.24), ("hei_5876", 5877.25),
                  ("oi_6300", 6302.05), ("oi_6363", 6365.54), ("nii_6548", 6549.86),
                  ("halpha", 6564.61), ("nii_6583", 6585.27), ("sii_6716", 6718.29),
                  ("sii_6731", 6732.67), ("ariii_7136", 7137.77))
_NEBULAR_WAVELENGTHS = np.array([lam for _, lam in _NEBULAR_LINES])
GALAXY_TYPES = ("star_forming", "passive", "agn", "post_starburst")
_GALAXY_TYPE_SHARES = (0.52, 0.30, 0.10, 0.08)


def _emission_rows(wavelengths):
    """Unit-area narrow Gaussians (0.3 A intrinsic at 5000 A) at vacuum ``wavelengths``."""
    def rows(grid):
        dlam = grid * np.log(grid[1] / grid[0])
        return np.stack([_shape(grid, dlam, lam, 0.3 * lam / 5000.0, "gauss")
                         for lam in wavelengths])
    return rows


def _nebular_ratios(kind, rng):
    """Line fluxes relative to H-alpha before dust, (n, lines); kind indexes GALAXY_TYPES."""
    n = kind.size
    sf = kind == 0
    # BPT: star-forming galaxies below the Kauffmann et al. (2003) line, AGN and LINER-like
    # emission to its right ([N II]/H-alpha > ~0.6).
    log_nii = np.where(sf, rng.uniform(-1.3, -0.35, n), rng.uniform(-0.25, 0.3, n))
    kauffmann = 0.61 / (np.minimum(log_nii, 0.0) - 0.05) + 1.3
    log_oiii = np.where(sf, kauffmann - rng.uniform(0.05, 0.4, n),
                        np.where(kind == 2, rng.uniform(0.45, 1.05, n), rng.uniform(-0.3, 0.35, n)))
    log_oiii = np.clip(log_oiii, -1.2, 1.1)
    hbeta = 1.0 / 2.86  # case B
    oiii = hbeta * 10 ** log_oiii
    oii = hbeta * 10 ** np.where(sf, rng.uniform(0.1, 0.6, n), rng.uniform(0.3, 0.8, n))
    sii = 10 ** np.where(sf, rng.uniform(-0.8, -0.4, n), rng.uniform(-0.4, 0.0, n))
    sii_ratio = rng.uniform(1.1, 1.45, n)  # 6716/6731, density sensitive
    oi = 10 ** np.where(sf, rng.uniform(-1.6, -1.1, n), rng.uniform(-1.0, -0.5, n))
    nii = 10 ** log_nii
    columns = {
        "oii_3726": oii * 0.42, "oii_3729": oii * 0.58,
        "neiii_3869": oiii * rng.uniform(0.05, 0.15, n),
        "hdelta": np.full(n, 0.259 * hbeta), "hgamma": np.full(n, 0.468 * hbeta),
        "hbeta": np.full(n, hbeta), "oiii_4959": oiii / 2.98, "oiii_5007": oiii,
        "hei_5876": np.full(n, 0.1 * hbeta), "oi_6300": oi, "oi_6363": oi / 3.0,
        "nii_6548": nii / 3.0, "halpha": np.ones(n), "nii_6583": nii,
        "sii_6716": sii * sii_ratio / (1 + sii_ratio), "sii_6731": sii / (1 + sii_ratio),
        "ariii_7136": np.full(n, 0.025),
    }
    return np.stack([columns[name] for name, _ in _NEBULAR_LINES], axis=1)


def _galaxies(n, rng):
    grid = _log_grid(*_GALAXY_GRID)
    shares = np.array(_GALAXY_TYPE_SHARES)
    kind = rng.choice(len(shares), size=n, p=shares / shares.sum())
    sf, passive, agn, psb = (kind == k for k in range(4))
    redshift = np.clip(rng.gamma(2.0, 0.06, n), 0.003, 0.55)
    # Light fractions at 5500 A of young (B), intermediate-age (A) and old (K giant-like) stars.
    young = np.select([sf, agn], [10 ** rng.uniform(-1.6, -0.4, n), rng.uniform(0, 0.08, n)],
                      rng.uniform(0, 0.01, n))
    middle = np.select([sf, psb, agn], [rng.uniform(0.1, 0.4, n), rng.uniform(0.3, 0.6, n),
                                        rng.uniform(0, 0.2, n)], rng.uniform(0, 0.05, n))
    middle = np.minimum(middle, 1.0 - young)
    old = 1.0 - young - middle
    sigma_v = np.select([sf, psb], [rng.uniform(40, 130, n), rng.uniform(60, 180, n)],
                        rng.uniform(110, 300, n))
    broadening = np.hypot(SIGMA_INSTRUMENT_KMS, sigma_v)
    feh = np.clip(rng.normal(0.05, 0.2, n), -1.0, 0.4)
    # The old population's light at 5500 A is mostly red giants: a cool, metal-rich mix.
    populations = ((old, rng.uniform(4250, 4900, n), 2.6, feh),
                   (middle, rng.uniform(7200, 9500, n), 4.0, feh - 0.1),
                   (young, rng.uniform(12000, 20000, n), 4.0, feh - 0.1))
    stellar = np.zeros((n, grid.size), np.float32)
    for weight, teff, logg, pop_feh in populations:
        stellar += weight[:, None].astype(np.float32) * _stellar_population(
            _GALAXY_GRID, teff, np.full(n, logg), pop_feh, broadening)
    ebv = np.select([sf, agn], [rng.uniform(0.05, 0.4, n), rng.uniform(0.0, 0.25, n)],
                    rng.uniform(0.0, 0.08, n))
    stellar *= np.exp(ebv[:, None].astype(np.float32)
                      * (-0.4 * _LN10 * _calzetti(grid)).astype(np.float32)[None, :])
    # Nebular emission: H-alpha equivalent width, line ratios, and gas extinction
    # E(B-V)_gas = E(B-V)_stars / 0.44 (Calzetti 2000).
    ha_ew = np.select([sf, agn], [10 ** rng.normal(1.35, 0.35, n), 10 ** rng.normal(1.1, 0.3, n)],
                      np.where(passive, rng.uniform(0.0, 3.0, n), rng.uniform(0.0, 1.5, n)))
    ratios = _nebular_ratios(kind, rng)
    k_lines = _calzetti(_NEBULAR_WAVELENGTHS)
    ha = [name for name, _ in _NEBULAR_LINES].index("halpha")
    ratios = ratios * 10 ** (-0.4 * (k_lines - k_lines[ha])[None, :] * (ebv / 0.44)[:, None])
    continuum_at_ha = stellar[:, np.searchsorted(grid, _NEBULAR_WAVELENGTHS[ha])]
    line_flux = ratios * (ha_ew * continuum_at_ha)[:, None]
    sigma_gas = np.select([sf, agn], [rng.uniform(30, 90, n), rng.uniform(150, 350, n)],
                          rng.uniform(80, 220, n))
    emission = _render(line_flux, np.hypot(SIGMA_INSTRUMENT_KMS, sigma_gas), _GAS_BINS,
                       functools.partial(_broadened_basis, "nebular", _GALAXY_GRID))
    observed = _to_observed(stellar + emission, grid, 1.0 + redshift)
    params = {"redshift": redshift, "galaxy_type": kind.astype(np.float64),
              "sigma_v_kms": sigma_v, "young_fraction": young, "intermediate_fraction": middle,
              "ebv_internal": ebv, "halpha_ew": ha_ew, "feh": feh}
    return observed, params


# ----------------------------------------------------------------------------------------------
# Quasars

_QSO_GRID = (640.0, 8500.0, 100.0)
# (name, vacuum A, rest equivalent width A, FWHM factor, velocity shift km/s), after the
# Vanden Berk et al. (2001) composite.
_BROAD_LINES = (("lya", 1215.67, 75.0, 0.9, 0.0), ("nv", 1240.14, 15.0, 0.9, 0.0),
                ("oi_1304", 1304.35, 2.0, 0.8, 0.0), ("cii_1335", 1335.30, 0.8, 0.8, 0.0),
                ("siiv", 1399.8, 8.0, 1.0, 0.0), ("civ", 1549.06, 24.0, 1.1, -600.0),
                ("heii_1640", 1640.42, 1.0, 1.0, 0.0), ("aliii", 1857.40, 1.0, 1.0, 0.0),
                ("ciii", 1908.73, 20.0, 1.0, 0.0), ("mgii", 2798.75, 33.0, 0.8, 0.0),
                ("hdelta", 4102.89, 5.0, 1.0, 0.0), ("hgamma", 4341.68, 13.0, 1.0, 0.0),
                ("hbeta", 4862.68, 46.0, 1.0, 0.0), ("hei_5876", 5877.25, 2.2, 1.0, 0.0),
                ("halpha", 6564.61, 195.0, 0.85, 0.0))
_NARROW_LINES = (("nev", 3426.84, 1.2), ("oii", 3728.48, 1.6), ("neiii", 3869.86, 1.4),
                 ("oiii_4959", 4960.30, 4.7), ("oiii_5007", 5008.24, 14.0),
                 ("nii_6583", 6585.27, 3.0))
# Fe II blends and the Balmer continuum as broad bumps: (centre A, sigma A, rest EW A).
_QSO_BUMPS = ((2500.0, 150.0, 45.0), (2950.0, 110.0, 25.0), (3300.0, 250.0, 40.0),
              (4570.0, 90.0, 20.0), (5270.0, 110.0, 20.0))
_QSO_FWHM_BINS = _geometric_bins(1500.0, 12000.0)
_NARROW_SIGMA_KMS = 200.0


@functools.lru_cache(maxsize=None)
def _broad_line_basis(fwhm_kms: float) -> np.ndarray:
    """(broad lines, pixels): a broad core plus a 2.5x broader base (Balmer and C IV lines are
    not Gaussian), convolved with the instrument."""
    grid = _log_grid(*_QSO_GRID)
    dlam = grid * np.log(grid[1] / grid[0])
    rows = []
    for _, lam, _, factor, shift in _BROAD_LINES:
        centre = lam * (1 + shift / C_KMS)
        sigma = lam * fwhm_kms * factor / C_KMS / 2.3548
        rows.append(0.65 * _shape(grid, dlam, centre, sigma, "gauss")
                    + 0.35 * _shape(grid, dlam, centre, 2.5 * sigma, "gauss"))
    rows = gaussian_filter1d(np.stack(rows), SIGMA_INSTRUMENT_KMS / _QSO_GRID[2], axis=1,
                             mode="constant")
    basis = np.ascontiguousarray(rows, dtype=np.float32)
    basis.flags.writeable = False
    return basis


def _quasars(n, rng):
    grid = _log_grid(*_QSO_GRID)
    dlam = grid * np.log(grid[1] / grid[0])
    redshift = np.clip(0.1 + rng.gamma(2.2, 0.6, n), 0.1, 4.5)
    beta = rng.normal(-1.55, 0.35, n)  # f_lambda ~ lambda^beta (alpha_nu ~ -0.45)
    continuum = np.exp(beta[:, None].astype(np.float32)
                       * np.log(grid / 3000.0).astype(np.float32)[None, :])
    bumps = sum(ew * _shape(grid, dlam, c, s, "gauss") for c, s, ew in _QSO_BUMPS)
    rest = continuum * (1.0 + rng.lognormal(0.0, 0.35, n)[:, None] * bumps[None, :]).astype(
        np.float32)
    # Broad lines: equivalent widths scatter per object and per line; Baldwin-like decline;
    # a few per cent are nearly featureless (BL Lac objects, weak-line quasars).
    featureless = rng.random(n) < 0.04
    strength = (rng.lognormal(0.0, 0.45, (n, 1)) * np.where(featureless, 0.05, 1.0)[:, None]
                * rng.lognormal(0.0, 0.25, (n, len(_BROAD_LINES))))
    ew = np.array([line[2] for line in _BROAD_LINES])[None, :] * strength
    ew *= (1.0 + redshift[:, None]) ** -0.3
    centres = np.array([line[1] for line in _BROAD_LINES])
    fwhm = 10 ** rng.uniform(np.log10(1800.0), np.log10(10000.0), n)
    rest += _render(ew * (centres[None, :] / 3000.0) ** beta[:, None], fwhm, _QSO_FWHM_BINS,
                    _broad_line_basis)
    narrow_centres = np.array([line[1] for line in _NARROW_LINES])
    narrow_ew = (np.array([line[2] for line in _NARROW_LINES])[None, :]
                 * rng.lognormal(0, 0.5, (n, 1)) * np.where(featureless, 0.05, 1.0)[:, None])
    narrow_basis = _broadened_basis("qso_narrow", _QSO_GRID,
                                    float(np.hypot(SIGMA_INSTRUMENT_KMS, _NARROW_SIGMA_KMS)))
    rest += (narrow_ew * (narrow_centres[None, :] / 3000.0) ** beta[:, None]).astype(
        np.float32) @ narrow_basis
    # Host-galaxy light (old stars) shows at low redshift.
    host_fraction = rng.uniform(0.0, 0.8, n) * np.exp(-redshift / 0.4)
    host = _stellar_population(_QSO_GRID, rng.uniform(4600, 5200, n), np.full(n, 2.8),
                               np.zeros(n), np.full(n, 220.0))
    at_5100 = np.searchsorted(grid, 5100.0)
    rest += (host_fraction * rest[:, at_5100] / host[:, at_5100])[:, None].astype(np.float32) * host
    ebv = rng.exponential(0.04, n)
    rest *= np.exp(ebv[:, None].astype(np.float32)
                   * (-0.4 * _LN10 * _smc(grid)).astype(np.float32)[None, :])
    # Lyman-limit systems absorb below 912 A in the quasar frame.
    tau_ll = 2.0 + rng.exponential(1.5, n) * (rng.random(n) < 0.5)
    rest *= np.where(grid[None, :] < 912.0, np.exp(-tau_ll)[:, None], 1.0).astype(np.float32)
    observed = _to_observed(rest, grid, 1.0 + redshift)
    forest = 1215.67 * (1.0 + redshift) > _LAM[0]
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
    tau_alpha = 0.0018 * (_LAM / 1215.67) ** 3.92
    tau_beta = np.where(_LAM[None, :] < 1025.72 * (1.0 + redshift)[:, None],
                        0.16 * 0.0018 * (_LAM / 1025.72) ** 3.92, 0.0)
    smoothing = 1.5  # pixels
    field = gaussian_filter1d(rng.standard_normal((n, _LAM.size), dtype=np.float32), smoothing,
                              axis=1)
    field *= np.float32(np.sqrt(2.0 * np.sqrt(np.pi) * smoothing))  # unit variance
    fluctuation = np.exp(field - 0.5)
    in_forest = _LAM[None, :] < 1215.67 * (1.0 + redshift)[:, None]
    return np.where(in_forest, np.exp(-(tau_alpha[None, :] + tau_beta) * fluctuation), 1.0)


_INTRINSIC_ROWS = {
    "stellar": lambda grid: _line_rows(grid, STELLAR_FEATURES),
    "nebular": _emission_rows(_NEBULAR_WAVELENGTHS),
    "qso_narrow": _emission_rows(np.array([lam for _, lam, _ in _NARROW_LINES])),
}


# ----------------------------------------------------------------------------------------------
# Line of sight, atmosphere, instrument, noise

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
_JOIN_WINDOW = slice(int(np.searchsorted(_LAM, 5600.0)), int(np.searchsorted(_LAM, 6300.0)))
_G_BAND = slice(int(np.searchsorted(_LAM, 4000.0)), int(np.searchsorted(_LAM, 5500.0)))
# Per class: median g-band S/N, its scatter (dex) and range; median flux level (mean over the
# grid, LAMOST units) and its scatter (natural log); sky / object flux ratio; Milky Way
# E(B-V): exponential mean, plus a share of disc sight lines with more; the range of the
# fraction of it the flux calibration removes.
_OBSERVING = {
    "star": dict(snr=35.0, snr_dex=0.33, snr_range=(4.0, 250.0), level=250.0, level_ln=1.1,
                 sky_ratio=0.15, ebv=0.04, disc_share=0.2, calibrated_ebv=(0.5, 1.2)),
    "galaxy": dict(snr=7.0, snr_dex=0.3, snr_range=(2.0, 60.0), level=30.0, level_ln=0.8,
                   sky_ratio=1.5, ebv=0.03, disc_share=0.0, calibrated_ebv=(0.5, 1.2)),
    "qso": dict(snr=6.0, snr_dex=0.3, snr_range=(2.0, 60.0), level=25.0, level_ln=0.8,
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
class _ObservedFrame:
    log_basis: np.ndarray  # (11, 3601): dust, DIBs, 5 telluric bands, Legendre P1..P3, blue edge
    sky_lines: np.ndarray  # (lines, 3601), unit-area lines x strength
    sky: np.ndarray  # (3601,) sky continuum + lines
    inverse_throughput: np.ndarray  # (3601,)


@functools.lru_cache(maxsize=None)
def _observed_frame() -> _ObservedFrame:
    lam = _LAM
    dust = -0.4 * _LN10 * 3.1 * _ccm89(lam)
    dib = np.zeros_like(lam)
    for air, sigma, ew in _INTERSTELLAR:
        centre = float(_air_to_vacuum(air))
        dib -= ew * np.exp(-0.5 * ((lam - centre) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    telluric = [-np.where(lam >= head, np.exp(-(lam - head) / length), 0.0)
                for head, length, _ in _TELLURIC]
    x = (lam - lam.mean()) / (lam.max() - lam.mean())
    legendre = [np.polynomial.legendre.Legendre.basis(k)(x) for k in (1, 2, 3)]
    blue_edge = -np.clip((4000.0 - lam) / 300.0, 0.0, None) ** 1.5
    log_basis = np.stack([dust, dib, *telluric, *legendre, blue_edge]).astype(np.float32)
    centres = _air_to_vacuum(np.array(_SKY_LINES_AIR))
    sigma = centres / RESOLUTION / 2.3548
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


def _observe(flux, kind: str, rng) -> tuple[np.ndarray, dict]:
    """Milky Way dust, atmosphere, calibration, flux level, noise and masks: (n, 3601) float32."""
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
    calibration = rng.normal(0.0, [0.07, 0.04, 0.03], (n, 3))
    # The blue edge (low throughput, few standard-star photons) is calibrated worst.
    blue_droop = rng.normal(0.12, 0.15, n)
    coefficients = np.column_stack([smooth_ebv, np.minimum(ebv, 1.0), telluric, calibration,
                                    blue_droop])
    log_factor = coefficients.astype(np.float32) @ frame.log_basis
    # The blue and red arms are scaled separately: a step at the join and a small bump.
    join = rng.normal(_ARM_JOIN, 25.0, n).astype(np.float32)
    step = rng.normal(0.0, 0.035, n).astype(np.float32)
    bump = rng.normal(0.01, 0.03, n).astype(np.float32)
    window = _LAM32[_JOIN_WINDOW][None, :] - join[:, None]
    log_factor[:, _JOIN_WINDOW] += (step[:, None] / (1.0 + np.exp(-window / 8.0))
                                    + bump[:, None] * np.exp(-0.5 * ((window - 70.0) / 50.0) ** 2))
    log_factor[:, _JOIN_WINDOW.stop:] += step[:, None]
    flux = np.asarray(flux, dtype=np.float32) * np.exp(log_factor)
    # Flux level and S/N: correlated draws (brighter objects tend to have higher S/N).
    common = rng.standard_normal(n)
    level = cond["level"] * np.exp(cond["level_ln"] * common)
    log_snr = np.log10(cond["snr"]) + cond["snr_dex"] * (
        0.5 * common + np.sqrt(0.75) * rng.standard_normal(n))
    snr = np.clip(10 ** log_snr, *cond["snr_range"])
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
    residual = rng.normal(0.0, 0.02, (n, frame.sky_lines.shape[0])).astype(np.float32)
    flux += sky_level * (residual @ frame.sky_lines)
    # Cosmic-ray hits the pipeline missed.
    hits = rng.poisson(0.7, n)
    rows = np.repeat(np.arange(n), hits)
    cols = rng.integers(0, flux.shape[1], rows.size)
    flux[rows, cols] += sigma[rows, cols] * rng.uniform(5.0, 30.0, rows.size).astype(np.float32)
    masked = _mask_and_bridge(flux, rng)
    params = {"ebv": ebv, "ebv_after_calibration": smooth_ebv, "snr_g": snr,
              "flux_level": level, "sky_ratio": sky_ratio,
              "arm_step": step.astype(np.float64), "masked_fraction": masked}
    return flux, params


# LAMOST pixels: constant log10 steps of 1e-4 (69 km/s) from 3690 A; the header S/N is per such
# pixel. The recipe interpolates them onto GRID, which averages and correlates the noise.
_NATIVE_LAM = 3690.0 * 10.0 ** (1e-4 * np.arange(3910))
_NATIVE_LO = np.clip(np.searchsorted(_NATIVE_LAM, _LAM) - 1, 0, _NATIVE_LAM.size - 2)
_NATIVE_W = ((_LAM - _NATIVE_LAM[_NATIVE_LO])
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
        start = np.searchsorted(_LAM, start_lam)
        stop = np.minimum(np.searchsorted(_LAM, end_lam, side="right"), size)
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
