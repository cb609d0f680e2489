"""Tests of the offline LAMOST-like simulator: contract, determinism, physics, realism."""

from __future__ import annotations

import numpy as np
import pytest

from astrospectra_jax.data import recipe, simulator, tasks
from astrospectra_jax.data.simulator import labeller
from astrospectra_jax.data.simulator import stars as stars_module

GRID = recipe.GRID


@pytest.fixture(scope="module")
def stars():
    return simulator.simulate("v2", 1200, seed=3)


@pytest.fixture(scope="module")
def surveyed():
    return simulator.simulate("v2", 600, seed=3, labelling="survey")


@pytest.fixture(scope="module")
def mixed():
    return simulator.simulate("v1", 1200, seed=4)


def _rank(values):
    return np.argsort(np.argsort(values))


def _band(flux, lo, hi):
    mask = (GRID >= lo) & (GRID < hi)
    return np.median(flux[..., mask], axis=-1)


# ---------------------------------------------------------------------------- contract

@pytest.mark.parametrize("task", ["v1", "v2"])
def test_shapes_dtypes_labels_and_balance(task):
    sim = simulator.simulate(task, 301, seed=0)
    assert sim.task == task
    assert sim.class_names == tasks.CLASS_NAMES[task]
    assert sim.flux.shape == (301, recipe.GRID_SIZE) and sim.flux.dtype == np.float32
    assert sim.labels.shape == (301,) and sim.labels.dtype == np.int32
    assert set(np.unique(sim.labels)) == {0, 1, 2}
    assert sorted(np.bincount(sim.labels)) == [100, 100, 101]
    for name, values in sim.params.items():
        assert values.shape == (301,), name
    assert np.all(np.isfinite(sim.params["snr_g"]))
    assert np.all(np.isfinite(sim.params["redshift"]))


def test_class_fractions_are_followed_exactly():
    sim = simulator.simulate("v1", 200, seed=1, class_fractions=(0.5, 0.3, 0.2))
    assert np.bincount(sim.labels).tolist() == [100, 60, 40]


@pytest.mark.parametrize("bad", [(1.0, 1.0), (0.5, -0.1, 0.6), (0.0, 0.0, 0.0), (np.nan, 1, 1)])
def test_bad_class_fractions_raise(bad):
    with pytest.raises(ValueError, match="class_fractions"):
        simulator.simulate("v2", 10, seed=0, class_fractions=bad)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match=r"'v3'.*v1, v2"):
        simulator.simulate("v3", 10, seed=0)


def test_negative_n_raises_and_zero_is_empty():
    with pytest.raises(ValueError, match="n must be"):
        simulator.simulate("v2", -1, seed=0)
    empty = simulator.simulate("v2", 0, seed=0)
    assert empty.flux.shape == (0, recipe.GRID_SIZE) and empty.labels.shape == (0,)


def test_same_seed_same_spectra_different_seed_different():
    a = simulator.simulate("v1", 64, seed=7)
    b = simulator.simulate("v1", 64, seed=7)
    c = simulator.simulate("v1", 64, seed=8)
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.params.keys() == b.params.keys()
    for key in a.params:
        np.testing.assert_array_equal(a.params[key], b.params[key])
    assert not np.array_equal(a.flux, c.flux)


def test_chunking_covers_every_spectrum():
    sim = simulator.simulate("v1", 50, seed=2, chunk_size=16)
    assert np.all(np.isfinite(sim.flux))
    assert np.all(np.median(sim.flux, axis=1) > 0)


# ---------------------------------------------------------------------------- flux values

def test_flux_is_finite_positive_and_in_lamost_units(stars, mixed):
    for sim in (stars, mixed):
        assert np.all(np.isfinite(sim.flux))
        medians = np.median(sim.flux, axis=1)
        assert np.all(medians > 0)
        assert 30 < np.median(medians) < 3000  # real LAMOST files: 10^1 .. 10^4
    # Stars are bright: negative pixels (noise at the faint blue end) are rare.
    assert np.mean(stars.flux < 0) < 0.01


def test_snr_spread_and_noise_follow_the_g_band_snr(stars):
    snr = stars.params["snr_g"]
    assert snr.min() < 10 and snr.max() > 80
    # Noise from second differences in a line-poor stretch tracks the nominal S/N.
    window = stars.flux[:, (GRID > 6000) & (GRID < 6500)].astype(np.float64)
    diff = np.diff(window, 2, axis=1)
    noise = 1.4826 * np.median(np.abs(diff - np.median(diff, axis=1, keepdims=True)), axis=1)
    measured = np.median(window, axis=1) / noise
    assert np.corrcoef(_rank(measured), _rank(snr))[0, 1] > 0.7


def test_a_share_of_spectra_ends_in_zeros_as_dr8_files_do(stars):
    # Real DR8 / DR10 files end the red arm with exact zeros the recipe keeps (unflagged).
    tail = stars.params["zero_tail_from"]
    has_tail = np.isfinite(tail)
    assert 0.3 < has_tail.mean() < 0.5
    np.testing.assert_array_equal(stars.flux[has_tail, -1], 0.0)
    assert np.all(stars.flux[~has_tail, -1] != 0.0)
    assert np.all((tail[has_tail] >= GRID[-1] - 100.0) & (tail[has_tail] <= GRID[-1]))
    assert np.all(stars.flux[:, GRID < 8990] != 0.0)


# ---------------------------------------------------------------------------- stellar physics

def test_hotter_stars_are_bluer(stars):
    teff = stars.params["teff"]
    colour = _band(stars.flux, 4400, 4600) / _band(stars.flux, 7400, 7600)
    bins = np.quantile(teff, np.linspace(0, 1, 6))
    medians = [np.median(colour[(teff >= lo) & (teff <= hi)])
               for lo, hi in zip(bins[:-1], bins[1:], strict=True)]
    assert np.all(np.diff(medians) > 0), medians
    assert np.corrcoef(_rank(teff), _rank(colour))[0, 1] > 0.8


def _line_depth(sim, centre, inner=4.0, side=(15.0, 35.0)):
    """1 - flux(core) / flux(sidebands), in each spectrum's rest frame."""
    depths = []
    for flux, z in zip(sim.flux, sim.params["redshift"], strict=True):
        lam = GRID / (1.0 + z)
        core = np.abs(lam - centre) < inner
        sides = (np.abs(lam - centre) > side[0]) & (np.abs(lam - centre) < side[1])
        depths.append(1.0 - np.mean(flux[core]) / np.mean(flux[sides]))
    return np.array(depths)


def test_h_alpha_deeper_in_f_than_in_k_and_mg_b_the_other_way(stars):
    f, k = stars.labels == 0, stars.labels == 2
    h_alpha = _line_depth(stars, 6564.61)
    assert h_alpha[f].mean() > h_alpha[k].mean() + 0.05
    mg_b = _line_depth(stars, 5175.0, inner=8.0, side=(40.0, 70.0))
    assert mg_b[k].mean() > mg_b[f].mean() + 0.05


def test_classes_overlap_in_temperature(stars):
    teff, labels = stars.params["teff"], stars.labels
    medians = [np.median(teff[labels == k]) for k in range(3)]
    assert medians[0] > medians[1] > medians[2]
    # Labelled by template matching: metallicity, gravity and noise move stars across the
    # class borders, so the classes overlap in temperature.
    assert teff[labels == 0].min() < teff[labels == 1].max()
    assert teff[labels == 1].min() < teff[labels == 2].max()


# ---------------------------------------------------------------------------- survey labels

def test_labeller_gives_each_noiseless_reference_its_own_subclass_and_class():
    teff = np.array([t for _, t in labeller.SUBCLASSES])
    references = stars_module.reference_spectra(teff, labeller.REFERENCE_LOGG,
                                                labeller.REFERENCE_FEH)
    found = labeller.classify(references)
    np.testing.assert_array_equal(found, np.arange(len(teff)))
    letters = [name[0] for name in labeller.SUBCLASS_NAMES]
    expected = [("F", "G", "K").index(x) if x in "FGK" else -1 for x in letters]
    np.testing.assert_array_equal(labeller.fgk_class(found), expected)
    # Any flux scale, and a smooth calibration tilt, are absorbed by the polynomial.
    tilt = np.exp(0.2 * (GRID - 6400.0) / 2700.0)[None, :]
    np.testing.assert_array_equal(labeller.classify(37.0 * references * tilt), found)


def test_labels_respond_to_metallicity_and_gravity_as_a_template_matcher_does():
    teff = np.array([6240.0, 5770.0, 5660.0, 5280.0])  # F7, G2, G5, K0 dwarfs
    solar = labeller.classify(stars_module.reference_spectra(teff, 4.5, 0.0))
    poor = labeller.classify(stars_module.reference_spectra(teff, 4.5, -1.0))
    rich = labeller.classify(stars_module.reference_spectra(teff, 4.5, 0.3))
    # Weaker metal lines look earlier (lower index), stronger ones later.
    assert np.all(poor < solar) and np.all(rich >= solar) and np.any(rich > solar)
    assert labeller.fgk_class(labeller.classify(
        stars_module.reference_spectra(np.array([5660.0]), 4.5, -1.0)))[0] == 0  # G5 -> F


def test_giant_references_label_giants_by_their_own_subclass(monkeypatch):
    monkeypatch.setattr(labeller, "GIANT_SUBCLASSES", ("G8", "K0", "K2"))
    labeller._design.cache_clear()
    try:
        dwarfs = np.array([t for _, t in labeller.SUBCLASSES])
        found = labeller.classify(stars_module.reference_spectra(dwarfs, labeller.REFERENCE_LOGG,
                                                                 labeller.REFERENCE_FEH))
        np.testing.assert_array_equal(found, np.arange(dwarfs.size))
    finally:
        monkeypatch.undo()
        labeller._design.cache_clear()


def test_line_vector_shortcut_equals_the_recipe():
    flux = np.random.default_rng(0).normal(100.0, 10.0, (7, recipe.GRID_SIZE))
    np.testing.assert_allclose(labeller._line_vector(flux), recipe.line_vector(flux),
                               rtol=1e-5)


def test_survey_labels_are_the_matched_subclass_class(surveyed):
    assert np.bincount(surveyed.labels).tolist() == [200, 200, 200]
    subclass = surveyed.params["subclass_index"].astype(int)
    np.testing.assert_array_equal(labeller.fgk_class(subclass), surveyed.labels)
    # Among stars labelled G, metal-poor ones are cooler: weaker lines look earlier.
    g = surveyed.labels == 1
    assert np.corrcoef(surveyed.params["feh"][g], surveyed.params["teff"][g])[0, 1] > 0
    assert np.all(np.isfinite(surveyed.flux))


def test_temperature_labelling_is_the_default_and_unknown_rules_raise():
    sim = simulator.simulate("v2", 60, seed=0)
    assert np.bincount(sim.labels).tolist() == [20, 20, 20]
    assert "subclass_index" not in sim.params
    with pytest.raises(ValueError, match="labelling"):
        simulator.simulate("v2", 6, seed=0, labelling="colour")


# ---------------------------------------------------------------------------- nuisances

def test_nuisance_draws_stay_in_their_ranges(stars, surveyed, mixed):
    ranges = simulator.NuisanceRanges()
    for sim in (stars, surveyed, mixed):
        p = sim.params
        for key, (lo, hi) in (("blue_droop", ranges.blue_droop), ("arm_step", ranges.arm_step),
                              ("extra_blur_a", ranges.extra_blur_a),
                              ("sky_residual", ranges.sky_residual)):
            assert lo <= p[key].min() and p[key].max() <= hi, key
            assert p[key].max() - p[key].min() > 0.8 * (hi - lo), key  # and fill them
        tilt = ranges.calibration_tilt[0]
        assert np.all(np.abs(p["calibration_tilt"]) <= tilt)
    assert np.all((stars.params["snr_g"] >= ranges.snr_star[0])
                  & (stars.params["snr_g"] <= ranges.snr_star[1]))
    faint = mixed.labels > 0
    assert np.all((mixed.params["snr_g"][faint] >= ranges.snr_faint[0])
                  & (mixed.params["snr_g"][faint] <= ranges.snr_faint[1]))


@pytest.mark.parametrize("name", simulator.NUISANCES)
def test_each_nuisance_switches_off(name):
    ranges = simulator.NuisanceRanges().without(name)
    sim = simulator.simulate("v1", 30, seed=5, nuisances=ranges)
    p = sim.params
    off = {"blue_droop": p["blue_droop"], "arm_join": p["arm_step"],
           "calibration_tilt": p["calibration_tilt"], "resolution": p["extra_blur_a"],
           "sky_residual": p["sky_residual"], "zero_tail": np.isfinite(p["zero_tail_from"])}
    if name in off:
        assert not np.any(off[name])
    elif name == "snr":
        assert np.unique(p["snr_g"]).size == 2  # stars 35, galaxies and quasars 7
    with pytest.raises(ValueError, match="unknown nuisance"):
        simulator.NuisanceRanges().without("moonlight")


# ---------------------------------------------------------------------------- galaxies, quasars

def test_galaxy_emission_lines_sit_at_the_redshifted_wavelength(mixed):
    p = mixed.params
    strong = np.flatnonzero((mixed.labels == 1) & (p["halpha_ew"] > 20) & (p["snr_g"] > 8)
                            & (6564.61 * (1 + p["redshift"]) < 9000))
    assert strong.size >= 10
    hits = []
    for i in strong:
        observed = 6564.61 * (1 + p["redshift"][i])
        at_line = np.max(mixed.flux[i, np.abs(GRID - observed) < 4])
        off_line = np.max(mixed.flux[i, (np.abs(GRID - observed - 60) < 4)])
        continuum = np.median(mixed.flux[i, np.abs(GRID - observed - 150) < 40])
        hits.append(at_line - continuum > 2 * max(off_line - continuum, 0.05 * continuum))
    assert np.mean(hits) > 0.9


def test_galaxy_types_differ_in_the_4000_break(mixed):
    p = mixed.params
    index = np.flatnonzero(mixed.labels == 1)
    d4000 = []
    for i in index:
        lam = GRID / (1 + p["redshift"][i])
        nu_flux = mixed.flux[i] * lam ** 2
        d4000.append(nu_flux[(lam > 4000) & (lam < 4100)].mean()
                     / nu_flux[(lam > 3850) & (lam < 3950)].mean())
    d4000, kind = np.array(d4000), p["galaxy_type"][index]
    passive = np.median(d4000[kind == simulator.GALAXY_TYPES.index("passive")])
    forming = np.median(d4000[kind == simulator.GALAXY_TYPES.index("star_forming")])
    # Measured through the blue-edge droop and calibration tilt of NuisanceRanges (passive
    # ~1.59 with builders 1.3.0's ranges, 1.6+ before).
    assert passive > 1.55 and forming < 1.4


def test_quasar_broad_lines_are_present_and_broad(mixed):
    p = mixed.params
    index = np.flatnonzero((mixed.labels == 2) & (p["redshift"] > 0.45) & (p["redshift"] < 2.0)
                           & (p["snr_g"] > 8))
    assert index.size >= 10
    excess, wide = [], []
    for i in index:
        observed = 2798.75 * (1 + p["redshift"][i])  # Mg II, in the window for 0.45 < z < 2
        flux = mixed.flux[i]
        offset = np.abs(GRID - observed)
        continuum = np.median(flux[(offset > 250) & (offset < 400)])
        peak = np.median(flux[offset < 5])
        shoulder = np.median(flux[np.abs(offset - 20 * (1 + p["redshift"][i])) < 5])
        excess.append(peak / continuum)
        wide.append(shoulder / continuum)
    assert np.median(excess) > 1.15
    assert np.median(wide) > 1.05  # still above the continuum 20 A (rest) from the centre
    assert np.all(p["fwhm_kms"][mixed.labels == 2] > 1000)


def test_only_a_minority_of_quasars_is_reddened(mixed):
    # The continuum slope is the SDSS composite's, which holds the typical quasar's dust; extra
    # SMC-like dust goes to ~10% (Richards et al. 2003 find ~6% of SDSS quasars reddened).
    ebv = mixed.params["ebv_internal"][mixed.labels == 2]
    reddened = ebv > 0
    assert 0.03 < reddened.mean() < 0.2
    assert np.median(ebv[reddened]) > 0.03


def test_v1_parameters_apply_only_where_they_should(mixed):
    p = mixed.params
    assert np.all(np.isfinite(p["teff"][mixed.labels == 0]))
    assert np.all(np.isnan(p["teff"][mixed.labels != 0]))
    assert np.all(np.isnan(p["fwhm_kms"][mixed.labels != 2]))
    assert p["redshift"][mixed.labels == 2].max() > 2.0
    assert np.all(np.abs(p["redshift"][mixed.labels == 0]) < 0.002)


# ---------------------------------------------------------------------------- through the recipe

def test_recipe_outputs_have_the_benchmark_shapes(mixed):
    images = recipe.image(mixed.flux[:50])
    vectors = recipe.line_vector(mixed.flux[:50])
    assert images.shape == (50, 28, 28) and images.dtype == np.uint8
    assert vectors.shape == (50, 721) and vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    assert np.all(images.reshape(50, -1).max(axis=1) == 255)


# ---------------------------------------------------------------------------- realism

def _normalised_line_vectors(flux):
    vectors = recipe.line_vector(flux).astype(np.float64)
    return vectors / np.median(vectors, axis=1, keepdims=True)


def test_classifier_trained_on_synthetic_classifies_real_lamost_stars(lamost_dir):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from astrospectra_jax.data import lamost

    fluxes, labels = [], []
    for path in lamost.find_spectra(lamost_dir):
        spectrum = lamost.read_spectrum(path)
        letter = (spectrum.subclass or "?")[:1]
        if letter in "FGK":
            fluxes.append(spectrum.on_grid())
            labels.append("FGK".index(letter))
    labels = np.array(labels)
    assert labels.size > 100, "expected the real F/G/K spectra"
    sim = simulator.simulate("v2", 3000, seed=0)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=500))
    model.fit(_normalised_line_vectors(sim.flux), sim.labels)
    accuracy = np.mean(model.predict(_normalised_line_vectors(np.array(fluxes))) == labels)
    majority = np.bincount(labels).max() / labels.size
    # Measured 0.79-0.80 over seeds at this size; chance (majority class) is 0.45.
    assert accuracy > 0.70 and accuracy > majority + 0.2, (accuracy, majority)
