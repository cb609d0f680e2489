"""Attributions (astrospectra_jax.explain) and the recipe's wavelength of each input value."""

from __future__ import annotations

import numpy as np
import pytest

from astrospectra_jax import explain
from astrospectra_jax.data import recipe


def test_image_pixel_wavelengths():
    edges = recipe.image_pixel_edges()
    assert edges.shape == (785,)
    assert edges[0] == 3700.0 and edges[1] == pytest.approx(3706.89, abs=0.01)
    assert edges[-1] == pytest.approx(recipe.GRID[-1] + recipe.GRID_STEP)
    ranges = recipe.image_pixel_wavelengths()
    assert ranges.shape == (784, 2)
    assert ranges[0].tolist() == [3700.0, 3706.0]  # grid points 0-4 averaged into pixel 0
    assert ranges[-1, 1] == 9100.0
    # Each pixel's grid points lie inside its edges, and a flux spike lands in that pixel.
    assert np.all(ranges[:, 0] >= edges[:-1] - 1e-9) and np.all(ranges[:, 1] < edges[1:])
    flux = np.ones(recipe.GRID_SIZE)
    j = 2000
    flux[j] = 100.0
    pixel = int(np.argmax(recipe.binned_means(flux)))
    assert ranges[pixel, 0] <= recipe.GRID[j] <= ranges[pixel, 1]
    assert recipe.input_wavelengths("image")[pixel] == pytest.approx(
        0.5 * (edges[pixel] + edges[pixel + 1]))


def test_line_value_wavelengths():
    centres = recipe.line_value_centres()
    assert centres.shape == (721,)
    np.testing.assert_array_equal(centres, recipe.GRID[::5])
    ranges = recipe.line_value_wavelengths()
    assert ranges[0].tolist() == [3700.0, 3703.0]  # edge padded at the start
    assert ranges[10].tolist() == [recipe.GRID[48], recipe.GRID[52]]
    assert ranges[-1].tolist() == [9097.0, 9100.0]
    flux = np.zeros(recipe.GRID_SIZE)
    flux[52] = 5.0
    assert np.flatnonzero(recipe.line_vector(flux)).tolist() == [10]
    np.testing.assert_array_equal(recipe.input_wavelengths("line"), centres)
    with pytest.raises(ValueError):
        recipe.input_wavelengths("cube")


def _tiny_model(d=721, k=3, seed=0):
    import jax.numpy as jnp

    rng = np.random.default_rng(seed)
    w1 = jnp.asarray(rng.normal(0, 0.05, (d, 16)), jnp.float32)
    w2 = jnp.asarray(rng.normal(0, 0.5, (16, k)), jnp.float32)

    def apply_fn(x):
        return jnp.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2

    return apply_fn


def test_integrated_gradients_completeness():
    apply_fn = _tiny_model()
    x = np.random.default_rng(1).normal(size=(5, 721)).astype(np.float32)
    target = np.array([0, 1, 2, 0, 1])
    attr = np.asarray(explain.integrated_gradients(apply_fn, x, target, steps=64))
    assert attr.shape == x.shape
    fx = np.asarray(apply_fn(x))[np.arange(5), target]
    f0 = np.asarray(apply_fn(np.zeros_like(x)))[np.arange(5), target]
    np.testing.assert_allclose(attr.sum(axis=1), fx - f0, rtol=2e-3, atol=2e-3)


def test_gradient_x_input_of_a_linear_model():
    import jax.numpy as jnp

    w = np.random.default_rng(2).normal(size=(721, 3)).astype(np.float32)

    def apply_fn(x):
        return x @ jnp.asarray(w)

    x = np.random.default_rng(3).normal(size=(4, 721)).astype(np.float32)
    target = np.array([2, 0, 1, 2])
    gxi = np.asarray(explain.gradient_x_input(apply_fn, x, target))
    np.testing.assert_allclose(gxi, x * w[:, target].T, rtol=1e-5)
    ig = np.asarray(explain.integrated_gradients(apply_fn, x, target, steps=4))
    np.testing.assert_allclose(ig, gxi, rtol=1e-4, atol=1e-5)  # linear: IG = gradient x input


def test_explainer_on_a_flax_image_model_batches_and_pads(tmp_path):
    from flax import nnx

    from astrospectra_jax import models

    model = models.create("simplecnn1", num_classes=3, rngs=nnx.Rngs(0))
    model.eval()
    graphdef, state = nnx.split(model)

    def apply_fn(x):
        return nnx.merge(graphdef, state)(x)

    x = np.random.default_rng(4).random((7, 28, 28, 1)).astype(np.float32)
    run = explain.make_explainer(apply_fn, "ig", steps=16)
    logits, predicted, attr = explain.explain_batches(run, x, batch_size=4)
    assert logits.shape == (7, 3) and predicted.shape == (7,) and attr.shape == (7, 784)
    np.testing.assert_array_equal(predicted, logits.argmax(1))
    f0 = np.asarray(apply_fn(np.zeros((1, 28, 28, 1), np.float32)))[0, predicted]
    np.testing.assert_allclose(attr.sum(1), logits[np.arange(7), predicted] - f0,
                               rtol=0.05, atol=0.05)
    gxi = explain.make_explainer(apply_fn, "gxi")
    assert explain.explain_batches(gxi, x, batch_size=8)[2].shape == (7, 784)
    ranges = explain.wavelength_ranges("image")
    png = explain.plot_class(tmp_path / "a.png", "F", ranges.mean(1), attr, x.reshape(7, -1),
                             np.array([np.nan] * 6 + [1.2]))
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_named_features_and_quasar_lines():
    names = dict(explain.named_features())
    assert names["H-alpha"][0] == pytest.approx(6564.6, abs=0.1)  # vacuum
    assert names["Ca II K"][0] == pytest.approx(3934.8, abs=0.1)
    assert {"G band", "Mg b", "Na D", "TiO", "H-beta", "H-gamma", "H-delta"} <= set(names)
    lines = dict(explain.quasar_broad_lines(1.0))
    assert lines["mgii"] == pytest.approx(2798.75 * 2)
    assert "halpha" not in lines
