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
  and narrow emission lines from Ly-alpha to H-alpha, host-galaxy light at low z, SMC-like dust
  for a reddened minority, Ly-alpha/beta forest and Lyman-limit absorption; redshift 0.1-4.5;
- line of sight and instrument: Milky Way dust (CCM 1989, R_V = 3.1) with interstellar Ca II K,
  Na D and diffuse bands; telluric O2 / H2O residuals; resolution R = 1800; flux-calibration
  wobble; the blue/red arm join near 5900 A; photon + sky noise set by a g-band S/N through a
  throughput curve; sky-line residuals; cosmic rays; pipeline-masked stretches bridged the way
  ``recipe.to_grid`` bridges them; red ends of exact zeros, as many DR8 / DR10 files have.

How close to real spectra, and what each change moved: ``benchmarks/simulator_realism.py`` and
benchmarks/README.md (Simulator realism).

Speed: absorption and emission features are (spectra, features) @ (features, pixels) products
with profiles precomputed on a rest-frame log-wavelength grid. Velocity pixels make the
instrument (and any velocity broadening) one Gaussian kernel per broadening bin, so each profile
set is built once and cached; radial velocity or redshift is one interpolation to the observed
grid. Everything works on chunks of ``CHUNK_SIZE`` spectra in float32.

Modules, by what they simulate: ``lines`` (wavelength grids, every line table, profile bases),
``stars``, ``galaxies``, ``quasars``, ``instrument`` (line of sight, atmosphere, calibration,
noise, masks) and ``dust`` (extinction laws). This module draws the labels and chunks the work.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from astrospectra_jax.data import recipe, tasks
from astrospectra_jax.data.simulator import galaxies, instrument, labeller, quasars, stars
from astrospectra_jax.data.simulator.galaxies import GALAXY_TYPES
from astrospectra_jax.data.simulator.instrument import NUISANCES, NuisanceRanges
from astrospectra_jax.data.simulator.lines import C_KMS, RESOLUTION, SIGMA_INSTRUMENT_KMS

__all__ = ["CHUNK_SIZE", "C_KMS", "GALAXY_TYPES", "LABELLINGS", "NUISANCES", "NuisanceRanges",
           "RESOLUTION", "SIGMA_INSTRUMENT_KMS", "SimulatedSpectra", "simulate"]

CHUNK_SIZE = 2048
LABELLINGS = ("temperature", "survey")
# Survey labelling: proposals per missing spectrum, and rounds before giving up.
_PROPOSAL_MARGIN = 1.0
_MAX_ROUNDS = 30


@dataclasses.dataclass(frozen=True)
class SimulatedSpectra:
    """A batch of simulated spectra on ``recipe.GRID`` with labels and physical parameters."""

    flux: np.ndarray  # (n, 3601) float32
    labels: np.ndarray  # (n,) int32, index into class_names
    task: str
    class_names: tuple[str, ...]
    params: dict[str, np.ndarray]  # (n,) each; NaN where a parameter does not apply


def simulate(task: str, n: int, seed: int, *, class_fractions=None,
             chunk_size: int = CHUNK_SIZE, labelling: str = "temperature",
             nuisances: NuisanceRanges = NuisanceRanges()) -> SimulatedSpectra:
    """Simulate ``n`` LAMOST-like spectra for ``task`` ("v1": STAR/GALAXY/QSO, "v2": F/G/K).

    Class counts follow ``class_fractions`` (default: equal) exactly up to rounding, in random
    order. The same ``seed`` gives the same spectra. ``labelling``: how v2 stars get their
    class (module docstring); ``nuisances``: the ranges of what is randomised.
    """
    if labelling not in LABELLINGS:
        raise ValueError(f"labelling must be one of {LABELLINGS}, got {labelling!r}")
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
        flux[start:stop], chunk_params = _simulate_chunk(task, labels[start:stop], rng,
                                                         labelling, nuisances)
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


def _simulate_chunk(task: str, labels: np.ndarray, rng, labelling: str,
                    nuisances: NuisanceRanges) -> tuple[np.ndarray, dict]:
    n = labels.size
    if task == "v2" and labelling == "survey":
        return _survey_labelled_stars(labels, rng, nuisances)
    flux = np.empty((n, recipe.GRID_SIZE), np.float32)
    params: dict[str, np.ndarray] = {}
    if task == "v2":
        groups = [(np.arange(n), "star", stars.type_teff_for_fgk(labels, rng))]
    else:
        groups = [(np.flatnonzero(labels == c), kind, None)
                  for c, kind in enumerate(("star", "galaxy", "qso"))]
    for index, kind, type_teff in groups:
        if index.size == 0:
            continue
        if kind == "star":
            if type_teff is None:
                type_teff = stars.type_teff_for_any_star(index.size, rng)
            intrinsic, group_params = stars.simulate(type_teff, rng, nuisances.line_scatter)
        elif kind == "galaxy":
            intrinsic, group_params = galaxies.simulate(index.size, rng)
        else:
            intrinsic, group_params = quasars.simulate(index.size, rng)
        flux[index], observing_params = instrument.observe(intrinsic, kind, rng, nuisances)
        for key, value in {**group_params, **observing_params}.items():
            params.setdefault(key, np.full(n, np.nan))[index] = value
    return flux, params


def _survey_labelled_stars(labels: np.ndarray, rng,
                           nuisances: NuisanceRanges) -> tuple[np.ndarray, dict]:
    """F/G/K stars labelled by ``labeller``: fill each label's slots with stars matched to it."""
    n = labels.size
    k = int(labels.max()) + 1 if n else 0
    slots = [np.flatnonzero(labels == c) for c in range(k)]
    filled = np.zeros(k, np.int64)
    flux = np.empty((n, recipe.GRID_SIZE), np.float32)
    params: dict[str, np.ndarray] = {}
    for _ in range(_MAX_ROUNDS):
        missing = np.array([len(slot) for slot in slots]) - filled
        if not missing.any():
            return flux, params
        propose = np.repeat(np.arange(k), np.ceil(_PROPOSAL_MARGIN * missing).astype(np.int64)
                            + 2 * (missing > 0))
        intrinsic, star_params = stars.simulate(stars.type_teff_for_fgk(propose, rng), rng,
                                                nuisances.line_scatter, metal_shift=False)
        observed, observing_params, sigma = instrument.observe(intrinsic, "star", rng,
                                                               nuisances, with_sigma=True)
        subclass = labeller.classify(observed, sigma)
        matched = labeller.fgk_class(subclass)
        round_params = {**star_params, **observing_params,
                        "subclass_index": subclass.astype(np.float64),
                        "proposed_class": propose.astype(np.float64)}
        for c in range(k):
            take = np.flatnonzero(matched == c)[:missing[c]]
            into = slots[c][filled[c]:filled[c] + take.size]
            flux[into] = observed[take]
            for key, value in round_params.items():
                params.setdefault(key, np.full(n, np.nan))[into] = value[take]
            filled[c] += take.size
    raise RuntimeError(f"survey labelling: classes still short of {missing} spectra after "
                       f"{_MAX_ROUNDS} rounds")
