"""Label stars like the survey: the subclass of the best-matching reference spectrum.

LAMOST's classes are not temperatures. The LAMOST 1D pipeline (Luo et al. 2015, RAA 15, 1095,
section 4; Wei et al. 2014 for its stellar templates) classifies a spectrum by fitting it with
every template of its library, each multiplied by a low-order polynomial that absorbs flux
calibration and reddening, weighting pixels by their inverse variance; the template with the
least chi-square gives the class and subclass. A star's F/G/K label is the first letter of that
subclass. So metallicity, gravity, reddening, calibration and noise move a star across class
borders in the way they move its spectrum towards another template, not by its temperature.

This module does the same with references made by the simulator itself:

- references: one noiseless, non-rotating dwarf spectrum per MK subclass of ``SUBCLASSES``, at
  the subclass's dwarf temperature (Pecaut & Mamajek 2013, table of 2022), log g 4.5 and
  [Fe/H] -0.15, at the nominal resolution. LAMOST's templates are averages of survey spectra
  of each subclass (Wei et al. 2014), so they carry the disc's typical metallicity: -0.15 is
  the thin-disc mean of ``stars._METALLICITY_POPULATIONS`` (solar references made the
  simulated K class too cool: v2 LR accuracy 0.739 +- 0.009 against 0.792 +- 0.007,
  benchmarks/README.md); A5-A9 and M0-M2 are there so that stars beyond the F and
  K ends can be matched to them (and leave the v2 sample, as A and M stars leave the real one);
- matching: on the recipe's 721-value line vectors, in 3850-8900 A without the O2 B and A
  telluric bands, each reference times a Legendre polynomial of degree ``POLY_DEGREE`` in
  wavelength, fitted by weighted least squares with weights 1 / sigma^2 from the simulated
  noise (uniform when no sigma is given); the label is the argmin of chi-square.

Vectorised: with weights w (n, p), template t_k and polynomial basis P (p, d), the normal
matrices are A_k = w @ (t_k^2 P_a P_b) and b_k = (w s) @ (t_k P_a), one (n, p) @ (p, K d(d+1)/2)
and one (n, p) @ (p, K d) product per chunk, then n K solves of d x d;
chi2_k = sum(w s^2) - b_k . A_k^-1 b_k.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from astrospectra_jax.data import recipe
from astrospectra_jax.data.simulator import stars

# MK subclass, dwarf Teff (K): Pecaut & Mamajek (2013), "A Modern Mean Dwarf Stellar Color and
# Effective Temperature Sequence", version 2022.04.16; LAMOST's subclass set between A5 and M2.
SUBCLASSES = (
    ("A5", 8180.0), ("A7", 7920.0), ("A9", 7500.0),
    ("F0", 7220.0), ("F2", 6810.0), ("F3", 6720.0), ("F4", 6640.0), ("F5", 6510.0),
    ("F6", 6340.0), ("F7", 6240.0), ("F8", 6170.0), ("F9", 6060.0),
    ("G0", 5920.0), ("G1", 5880.0), ("G2", 5770.0), ("G3", 5720.0), ("G4", 5680.0),
    ("G5", 5660.0), ("G6", 5590.0), ("G7", 5530.0), ("G8", 5490.0), ("G9", 5340.0),
    ("K0", 5280.0), ("K1", 5170.0), ("K2", 5040.0), ("K3", 4830.0), ("K4", 4600.0),
    ("K5", 4450.0), ("K7", 4050.0),
    ("M0", 3850.0), ("M1", 3660.0), ("M2", 3560.0),
)
SUBCLASS_NAMES = tuple(name for name, _ in SUBCLASSES)
REFERENCE_LOGG = 4.5
REFERENCE_FEH = -0.15
# Giant references (log g 2.5) for these subclasses, at the dwarf temperature less the
# simulator's own giant offset (stars._GIANT_TEFF_OFFSET): LAMOST's library has giant templates.
# None by default: giants G5-K7 changed nothing beyond the spread (benchmarks/README.md).
GIANT_SUBCLASSES = ()
GIANT_LOGG = 2.5
POLY_DEGREE = 3
WINDOW = (3850.0, 8900.0)
EXCLUDED = ((6860.0, 6960.0), (7580.0, 7700.0))  # O2 B and A bands


@dataclasses.dataclass(frozen=True)
class _Design:
    subclass: np.ndarray  # (K,) index into SUBCLASSES of each reference
    mask: np.ndarray  # (721,) bool: pixels used
    squares: np.ndarray  # (p, K * d(d+1)/2): t_k^2 P_a P_b, a <= b
    linear: np.ndarray  # (p, K * d): t_k P_a
    upper: tuple[np.ndarray, np.ndarray]  # the (a, b) index pairs, a <= b


@functools.lru_cache(maxsize=None)
def _design() -> _Design:
    teff = np.array([t for _, t in SUBCLASSES])
    giants = np.array([SUBCLASS_NAMES.index(name) for name in GIANT_SUBCLASSES], dtype=np.int64)
    subclass = np.concatenate([np.arange(teff.size), giants])
    giant_teff = teff[giants] - np.interp(teff[giants], stars._TYPE_TEFF,
                                          stars._GIANT_TEFF_OFFSET)
    references = stars.reference_spectra(teff, REFERENCE_LOGG, REFERENCE_FEH)
    if giants.size:
        references = np.concatenate([
            references, stars.reference_spectra(giant_teff, GIANT_LOGG, REFERENCE_FEH)])
    lam = recipe.line_vector(recipe.GRID)
    mask = (lam >= WINDOW[0]) & (lam <= WINDOW[1])
    for lo, hi in EXCLUDED:
        mask &= ~((lam >= lo) & (lam <= hi))
    t = recipe.line_vector(references).astype(np.float64)[:, mask]
    t /= np.median(t, axis=1, keepdims=True)
    x = np.interp(lam[mask], WINDOW, (-1.0, 1.0))
    basis = np.stack([np.polynomial.legendre.Legendre.basis(k)(x)
                      for k in range(POLY_DEGREE + 1)], axis=1)  # (p, d)
    a, b = np.triu_indices(POLY_DEGREE + 1)
    squares = (t[:, :, None] ** 2 * (basis[:, a] * basis[:, b])[None]).transpose(1, 0, 2)
    linear = (t[:, :, None] * basis[None]).transpose(1, 0, 2)
    design = _Design(subclass, mask, np.ascontiguousarray(squares.reshape(mask.sum(), -1)),
                     np.ascontiguousarray(linear.reshape(mask.sum(), -1)), (a, b))
    for array in (design.subclass, design.mask, design.squares, design.linear):
        array.flags.writeable = False
    return design


def _line_vector(flux) -> np.ndarray:
    """``recipe.line_vector`` for (n, 3601) rows, by reshaping: 3601 + 4 edge-padded values are
    721 blocks of 5 centred on 0, 5, ..., 3600."""
    flux = np.asarray(flux, dtype=np.float64)
    padded = np.concatenate([flux[:, :1], flux[:, :1], flux, flux[:, -1:], flux[:, -1:]], axis=1)
    return padded.reshape(flux.shape[0], -1, 5).mean(axis=2)


def chi_square(flux, sigma=None) -> np.ndarray:
    """(n, K) chi-square of each spectrum (n, 3601) against each reference (dwarfs of
    SUBCLASSES in order, then giants of GIANT_SUBCLASSES)."""
    design = _design()
    k, d = design.subclass.size, POLY_DEGREE + 1
    s = _line_vector(np.atleast_2d(flux))[:, design.mask]
    scale = np.median(s, axis=1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    s /= scale
    if sigma is None:
        w = np.ones_like(s)
    else:
        # A 5-pixel mean has 1/5 of the variance of uncorrelated pixels.
        variance = _line_vector(np.atleast_2d(sigma).astype(np.float64) ** 2)
        variance = variance[:, design.mask] / 5.0 / scale ** 2
        w = 1.0 / np.maximum(variance, 1e-12)
    n = s.shape[0]
    upper = (w @ design.squares).reshape(n, k, -1)
    normal = np.empty((n, k, d, d))
    a, b = design.upper
    normal[:, :, a, b] = upper
    normal[:, :, b, a] = upper
    rhs = ((w * s) @ design.linear).reshape(n, k, d)
    coefficients = np.linalg.solve(normal, rhs[..., None])[..., 0]
    return np.sum(w * s * s, axis=1)[:, None] - np.sum(rhs * coefficients, axis=2)


def classify(flux, sigma=None) -> np.ndarray:
    """(n,) index into SUBCLASSES of the best-matching reference."""
    return _design().subclass[np.argmin(chi_square(flux, sigma), axis=1)]


def fgk_class(subclass) -> np.ndarray:
    """v2 class index (F 0, G 1, K 2) of subclass indices; -1 for A and M."""
    letters = np.array([name[0] for name in SUBCLASS_NAMES])
    lookup = np.select([letters == "F", letters == "G", letters == "K"], [0, 1, 2], -1)
    return lookup[np.asarray(subclass)]
