"""Wavelengths, line tables and profile bases shared by the stars, galaxies and quasars.

Every table of spectral lines lives here: the stellar absorption features (equivalent widths as
tables in Teff), nebular emission lines, quasar broad and narrow lines. Profiles are built once
per broadening on a rest-frame log-wavelength grid (constant velocity steps, so the instrument
and any velocity broadening are one Gaussian kernel) and cached; ``render`` turns per-spectrum
strengths into spectra as (spectra, features) @ (features, pixels) products.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from scipy.ndimage import gaussian_filter1d

from astrospectra_jax.data import recipe

C_KMS = 299792.458
# LAMOST's resolving power: every profile basis is convolved with this Gaussian at least.
RESOLUTION = 1800.0
SIGMA_INSTRUMENT_KMS = C_KMS / RESOLUTION / (2.0 * np.sqrt(2.0 * np.log(2.0)))  # ~70.7 km/s
LAM = recipe.GRID.astype(np.float64)
LAM32 = LAM.astype(np.float32)
LN10 = np.log(10.0)


def air_to_vacuum(air):
    """Air -> vacuum wavelength (Angstrom), Ciddor/Morton refractive index (one iteration)."""
    air = np.asarray(air, dtype=np.float64)
    s2 = (1e4 / air) ** 2
    n = 1.0 + 8.34254e-5 + 2.406147e-2 / (130.0 - s2) + 1.5998e-4 / (38.9 - s2)
    return np.where(air > 2000.0, air * n, air)


@functools.lru_cache(maxsize=None)
def log_grid(lam_min: float, lam_max: float, step_kms: float) -> np.ndarray:
    """Rest-frame wavelengths with constant velocity steps (read-only)."""
    step = np.log1p(step_kms / C_KMS)
    size = int(np.ceil(np.log(lam_max / lam_min) / step)) + 1
    grid = lam_min * np.exp(step * np.arange(size))
    grid.flags.writeable = False
    return grid


def to_observed(rest, rest_grid: np.ndarray, one_plus_z) -> np.ndarray:
    """Linear interpolation of rest-frame rows (n, M) on a log grid onto the observed GRID."""
    step = np.log(rest_grid[1] / rest_grid[0])
    base = ((np.log(LAM) - np.log(rest_grid[0])) / step).astype(np.float32)
    shift = (np.log(np.asarray(one_plus_z, dtype=np.float64)) / step).astype(np.float32)
    pos = base[None, :] - shift[:, None]
    lo = np.clip(pos.astype(np.int32), 0, rest_grid.size - 2)
    frac = np.clip(pos - lo, 0.0, 1.0)
    flat = rest.reshape(-1)
    lo = lo + (np.arange(rest.shape[0], dtype=np.int32) * rest_grid.size)[:, None]
    left = flat[lo]
    return left + frac * (flat[lo + 1] - left)


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


def teff_table(*values):
    """A table over TEFF_NODES."""
    if len(values) != TEFF_NODES.size:
        raise ValueError(f"a Teff table needs {TEFF_NODES.size} values, got {len(values)}")
    return tuple(float(v) for v in values)


_f = teff_table  # a short name for the tables below


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
    # H-alpha weakens less towards cool stars than the higher series lines. Strengths set from
    # the real LAMOST stars' H-alpha index (6550-6578 A against 6500-6530 / 6600-6630 A) by
    # subclass: F3-5 / G0-2 / G3-5 / K0-3 real 3.95 / 3.13 / 2.45 / 1.73 A; the earlier table
    # gave 2.77 / 1.79 / 1.62 / 1.06 at the same Teff, this one 3.28 / 2.33 / 2.16 / 1.56
    # (benchmarks/README.md, Simulator realism).
    _Feature("h_alpha_core", ((6562.80, 1.0),), "gauss", 0.6,
             _f(0.45, 0.75, 1.1, 1.5, 1.9, 2.2, 2.4, 2.5, 2.5, 2.5, 2.5, 2.4, 2.0, 1.0)),
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
    # Ca I 4227 index (4222-4235 A, Lick-like) of the real stars, G0-2 / G6-9 / K0-3: 0.67 /
    # 1.79 / 2.60 A; the earlier table gave 0.21 / 0.05 / 0.20, this one 0.91 / 0.90 / 1.14.
    _Feature("ca1_4227", ((4226.73, 1.0),), "gauss", 0.6,
             _f(9, 8, 6.5, 5.0, 3.8, 2.6, 1.7, 1.1, 0.7, 0.4, 0.15, 0.05, 0.0, 0.0),
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
             0.8, teff_table(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.05, 0.4, 1.0)),
    _Feature("k1", ((7664.90, 1.0), (7698.96, 0.8)), "gauss", 0.5,
             _f(3, 2.5, 1.5, 0.9, 0.5, 0.3, 0.15, 0.05, 0, 0, 0, 0, 0, 0), metal=0.3, giant=0.6),
    _Feature("na1_8190", ((8183.26, 0.9), (8194.82, 1.0)), "gauss", 0.6,
             _f(3, 2.8, 2.0, 1.2, 0.6, 0.3, 0.12, 0.05, 0, 0, 0, 0, 0, 0), metal=0.3, giant=0.4),
    _Feature("mg2_uv", ((2795.53, 1.0), (2802.71, 0.9), (2852.13, 0.6)), "lorentz", 3.0,
             _f(15, 15, 14, 12, 10, 8, 6, 5, 4.5, 4, 3.5, 3, 2, 1), metal=0.3),
    # TiO5 index (7128-7137 A over 7044-7048 A) of the real stars, K7 / M0 / M1 / M2: 0.93 /
    # 0.83 / 0.66 / 0.55 (Reid et al. 1995: M0 0.81, M2 0.60). Simulated dwarfs at 4050 /
    # 3850 / 3650 / 3475 K: 0.83 / 0.75 / 0.66 / 0.60 with the earlier table (too deep at K7-M0,
    # and real M0 stars were called GALAXY), 0.89 / 0.80 / 0.69 / 0.62 with this one.
    _Feature("tio", _TIO, "band_red", 120.0,
             _f(1.6, 0.85, 0.2, 0.03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), metal=0.3),
    _Feature("cah", ((6382.0, 0.7), (6750.0, 1.0)), "band_red", 80.0,
             _f(0.5, 0.2, 0.03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), giant=0.1),
)

def _line_rows(grid: np.ndarray, features) -> np.ndarray:
    """Intrinsic (unbroadened) profiles, one row per feature, on a log grid."""
    rows = np.zeros((len(features), grid.size))
    dlam = grid * np.log(grid[1] / grid[0])
    for k, feature in enumerate(features):
        for air, weight in feature.lines:
            centre = float(air_to_vacuum(air))
            rows[k] += weight * profile(grid, dlam, centre, feature.width * centre / 5000.0,
                                       feature.shape)
    return rows


def profile(grid, dlam, centre, width, shape):
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


def geometric_bins(lo: float, hi: float, ratio: float = 1.06) -> tuple[float, ...]:
    """Broadening bins spaced by ``ratio``: the nearest bin is within 3% of any width."""
    count = int(np.ceil(np.log(hi / lo) / np.log(ratio))) + 1
    return tuple(float(v) for v in np.geomspace(lo, hi, count))


@functools.lru_cache(maxsize=None)
def _intrinsic_rows(kind: str, grid_key: tuple) -> np.ndarray:
    rows = _INTRINSIC_ROWS[kind](log_grid(*grid_key))
    rows.flags.writeable = False
    return rows


@functools.lru_cache(maxsize=None)
def broadened_basis(kind: str, grid_key: tuple, sigma_kms: float) -> np.ndarray:
    """(features, pixels) float32 profiles of ``kind`` broadened by a Gaussian (km/s)."""
    rows = gaussian_filter1d(_intrinsic_rows(kind, grid_key), sigma_kms / grid_key[2], axis=1,
                             mode="constant", truncate=5.0)
    basis = np.ascontiguousarray(rows, dtype=np.float32)
    basis.flags.writeable = False
    return basis


def render(amplitudes, widths, bins, basis_for) -> np.ndarray:
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


# Nebular lines (vacuum A).
NEBULAR_LINES = (("oii_3726", 3727.09), ("oii_3729", 3729.88), ("neiii_3869", 3869.86),
                 ("hdelta", 4102.89), ("hgamma", 4341.68), ("hbeta", 4862.68),
                 ("oiii_4959", 4960.30), ("oiii_5007", 5008.24), ("hei_5876", 5877.25),
                 ("oi_6300", 6302.05), ("oi_6363", 6365.54), ("nii_6548", 6549.86),
                 ("halpha", 6564.61), ("nii_6583", 6585.27), ("sii_6716", 6718.29),
                 ("sii_6731", 6732.67), ("ariii_7136", 7137.77))
NEBULAR_WAVELENGTHS = np.array([lam for _, lam in NEBULAR_LINES])


def _emission_rows(wavelengths):
    """Unit-area narrow Gaussians (0.3 A intrinsic at 5000 A) at vacuum ``wavelengths``."""
    def rows(grid):
        dlam = grid * np.log(grid[1] / grid[0])
        return np.stack([profile(grid, dlam, lam, 0.3 * lam / 5000.0, "gauss")
                         for lam in wavelengths])
    return rows


# Quasar broad lines: (name, vacuum A, rest equivalent width A, FWHM factor, velocity
# shift km/s), after the Vanden Berk et al. (2001) composite.
QSO_BROAD_LINES = (("lya", 1215.67, 75.0, 0.9, 0.0), ("nv", 1240.14, 15.0, 0.9, 0.0),
                   ("oi_1304", 1304.35, 2.0, 0.8, 0.0), ("cii_1335", 1335.30, 0.8, 0.8, 0.0),
                   ("siiv", 1399.8, 8.0, 1.0, 0.0), ("civ", 1549.06, 24.0, 1.1, -600.0),
                   ("heii_1640", 1640.42, 1.0, 1.0, 0.0), ("aliii", 1857.40, 1.0, 1.0, 0.0),
                   ("ciii", 1908.73, 20.0, 1.0, 0.0), ("mgii", 2798.75, 33.0, 0.8, 0.0),
                   ("hdelta", 4102.89, 5.0, 1.0, 0.0), ("hgamma", 4341.68, 13.0, 1.0, 0.0),
                   ("hbeta", 4862.68, 46.0, 1.0, 0.0), ("hei_5876", 5877.25, 2.2, 1.0, 0.0),
                   ("halpha", 6564.61, 195.0, 0.85, 0.0))
# Quasar narrow lines: (name, vacuum A, rest equivalent width A).
QSO_NARROW_LINES = (("nev", 3426.84, 1.2), ("oii", 3728.48, 1.6), ("neiii", 3869.86, 1.4),
                    ("oiii_4959", 4960.30, 4.7), ("oiii_5007", 5008.24, 14.0),
                    ("nii_6583", 6585.27, 3.0))

# Unbroadened profile sets by name, each a function of the log grid.
_INTRINSIC_ROWS = {
    "stellar": lambda grid: _line_rows(grid, STELLAR_FEATURES),
    "nebular": _emission_rows(NEBULAR_WAVELENGTHS),
    "qso_narrow": _emission_rows(np.array([lam for _, lam, _ in QSO_NARROW_LINES])),
}

