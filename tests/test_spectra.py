"""The spectrum recipe on inputs whose answer is known: grid, resampling, line vector, image."""

import numpy as np
import pytest

from astrospectra_jax.data import recipe

RNG = np.random.default_rng(0)


def lamost_like_wavelengths(n=3950, start=3690.0):
    """Log-linear wavelengths like LAMOST LRS (1e-4 dex per pixel), ~3690-9160 A."""
    return 10.0 ** (np.log10(start) + 1e-4 * np.arange(n))


def linear(wavelength):
    return 2.0 + 0.001 * wavelength


def test_grid_endpoints_and_size():
    assert recipe.GRID.shape == (recipe.GRID_SIZE,) == (3601,)
    assert recipe.GRID[0] == 3700.0
    assert recipe.GRID[-1] == 9100.0
    np.testing.assert_allclose(np.diff(recipe.GRID), 1.5, rtol=0, atol=1e-9)


def test_to_grid_of_a_linear_function_is_exact():
    wl = lamost_like_wavelengths()
    out = recipe.to_grid(wl, linear(wl))
    assert out.shape == (3601,) and out.dtype == np.float32
    np.testing.assert_allclose(out, linear(recipe.GRID), rtol=1e-6)


def test_to_grid_accepts_unsorted_input():
    wl = lamost_like_wavelengths()
    order = RNG.permutation(wl.size)
    out = recipe.to_grid(wl[order], linear(wl)[order])
    np.testing.assert_allclose(out, linear(recipe.GRID), rtol=1e-6)


def test_to_grid_holds_edge_values_beyond_the_data():
    wl = np.linspace(3500.0, 8000.0, 3000)
    out = recipe.to_grid(wl, linear(wl))
    beyond = recipe.GRID > 8000.0
    np.testing.assert_allclose(out[beyond], linear(8000.0), rtol=1e-6)
    np.testing.assert_allclose(out[~beyond], linear(recipe.GRID[~beyond]), rtol=1e-6)


@pytest.mark.parametrize("how", ["ivar", "ormask", "nan", "inf"])
def test_masked_pixels_are_bridged_from_neighbours(how):
    wl = lamost_like_wavelengths()
    flux = linear(wl)
    ivar = np.ones_like(wl)
    ormask = np.zeros(wl.size, dtype=np.int64)
    bad = np.zeros(wl.size, dtype=bool)
    bad[100:140] = bad[1500] = bad[2600:2620] = True
    flux[bad] = 1e6  # a spike that must not leak into the result
    if how == "ivar":
        ivar[bad] = 0.0
    elif how == "ormask":
        ormask[bad] = 4
    else:
        flux[bad] = np.nan if how == "nan" else np.inf
    out = recipe.to_grid(wl, flux, ivar, ormask)
    assert np.all(np.isfinite(out))
    # Linear data bridged linearly between good neighbours is exact.
    np.testing.assert_allclose(out, linear(recipe.GRID), rtol=1e-6)


def test_unmasked_spike_does_reach_the_grid():
    # Guards the test above: without the mask the spike shows.
    wl = lamost_like_wavelengths()
    flux = linear(wl)
    flux[1500] = 1e6
    assert recipe.to_grid(wl, flux).max() > 1e5


def test_good_pixels():
    flux = np.array([1.0, np.nan, 1.0, 1.0, np.inf, 1.0])
    ivar = np.array([1.0, 1.0, 0.0, -1.0, 1.0, 1.0])
    ormask = np.array([0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(recipe.good_pixels(flux, ivar, ormask),
                                  [True, False, False, False, False, True])
    ormask[0] = 1
    assert not recipe.good_pixels(flux, ivar, ormask)[0]
    np.testing.assert_array_equal(recipe.good_pixels(flux), np.isfinite(flux))


def test_too_little_coverage_raises_naming_the_spectrum():
    wl = lamost_like_wavelengths()
    ivar = np.ones_like(wl)
    ivar[(wl > 4000.0) & (wl < 8000.0)] = 0.0  # a 4000 A hole: ~26% of the grid left
    with pytest.raises(recipe.BadSpectrumError, match="spec-1234.fits"):
        recipe.to_grid(wl, linear(wl), ivar, name="spec-1234.fits")
    # The same spectrum passes with a lower threshold.
    out = recipe.to_grid(wl, linear(wl), ivar, name="spec-1234.fits", min_good_fraction=0.2)
    assert np.all(np.isfinite(out))


def test_short_wavelength_range_is_rejected():
    wl = np.linspace(3700.0, 5000.0, 1000)  # 24% of the grid
    with pytest.raises(recipe.BadSpectrumError, match="short-one"):
        recipe.to_grid(wl, linear(wl), name="short-one")


def test_all_bad_or_mismatched_input_is_rejected():
    wl = lamost_like_wavelengths()
    with pytest.raises(recipe.BadSpectrumError, match="all-nan"):
        recipe.to_grid(wl, np.full(wl.size, np.nan), name="all-nan")
    with pytest.raises(recipe.BadSpectrumError, match="mismatch"):
        recipe.to_grid(wl, np.ones(wl.size - 1), name="mismatch")


def direct_line_vector(flux):
    """Per output index k: mean of flux[5k-2 .. 5k+2], indices clipped to the array."""
    n = flux.shape[-1]
    out = np.empty(recipe.LINE_SIZE)
    for k in range(recipe.LINE_SIZE):
        idx = np.clip(np.arange(5 * k - 2, 5 * k + 3), 0, n - 1)
        out[k] = flux[idx].mean()
    return out


def test_line_vector_matches_a_direct_mean():
    flux = RNG.normal(size=3601)
    out = recipe.line_vector(flux)
    assert out.shape == (721,) and out.dtype == np.float32
    np.testing.assert_allclose(out, direct_line_vector(flux), rtol=1e-5, atol=1e-6)
    # Edge padding spelled out at both ends.
    np.testing.assert_allclose(out[0], (3 * flux[0] + flux[1] + flux[2]) / 5, rtol=1e-5)
    np.testing.assert_allclose(out[-1], (flux[3598] + flux[3599] + 3 * flux[3600]) / 5,
                               rtol=1e-5)


def test_line_vector_batch_is_per_item():
    batch = RNG.normal(size=(4, 3601))
    out = recipe.line_vector(batch)
    assert out.shape == (4, 721) and out.dtype == np.float32
    for item, row in zip(batch, out):
        np.testing.assert_array_equal(row, recipe.line_vector(item))


def test_line_vector_of_a_constant_is_constant():
    np.testing.assert_allclose(recipe.line_vector(np.full(3601, 7.5)), 7.5)


def direct_binned_means(flux):
    edges = np.linspace(0, 3601, 785)
    index = np.arange(3601)
    return np.array([flux[(index >= lo) & (index < hi)].mean()
                     for lo, hi in zip(edges[:-1], edges[1:])])


def test_binned_means_match_a_loop_over_the_edges():
    flux = RNG.normal(size=3601)
    out = recipe.binned_means(flux)
    assert out.shape == (784,)
    np.testing.assert_allclose(out, direct_binned_means(flux), rtol=1e-12, atol=1e-12)
    batch = RNG.normal(size=(3, 3601))
    np.testing.assert_allclose(recipe.binned_means(batch),
                               np.stack([direct_binned_means(f) for f in batch]), rtol=1e-12)


def test_image_shape_dtype_and_range():
    img = recipe.image(RNG.normal(size=3601))
    assert img.shape == (28, 28) and img.dtype == np.uint8
    assert img.min() == 0 and img.max() == 255


def test_image_equals_scaled_binned_means():
    flux = RNG.normal(size=3601)
    means = direct_binned_means(flux)
    expected = np.rint((means - means.min()) / (means.max() - means.min()) * 255)
    np.testing.assert_array_equal(recipe.image(flux), expected.reshape(28, 28))


def test_image_of_a_ramp_increases_row_by_row():
    img = recipe.image(np.arange(3601, dtype=np.float64))
    flat = img.ravel()  # row-major: row r holds bins 28r .. 28r+27
    assert flat[0] == 0 and flat[-1] == 255
    assert np.all(np.diff(flat.astype(int)) >= 0)
    assert np.all(img[:, 0] < img[:, -1])  # increasing along each row
    assert np.all(img[:-1, -1] <= img[1:, 0])  # each row ends where the next begins
    assert np.all(np.diff(img[:, 0].astype(int)) > 0)  # increasing down the rows


def test_image_puts_bin_r28_plus_c_at_row_r_column_c():
    edges = np.linspace(0, 3601, 785)
    index = np.arange(3601)
    for r, c in [(0, 0), (3, 5), (0, 27), (27, 0), (27, 27)]:
        b = r * 28 + c
        flux = np.where((index >= edges[b]) & (index < edges[b + 1]), 1.0, 0.0)
        img = recipe.image(flux)
        assert img[r, c] == 255
        assert np.count_nonzero(img) == 1, (r, c)


def test_flat_spectrum_gives_a_zero_image():
    img = recipe.image(np.full(3601, 3.0))
    assert img.dtype == np.uint8 and not img.any()


def test_image_batch_is_per_item():
    batch = np.concatenate([RNG.normal(size=(3, 3601)), np.full((1, 3601), 2.0)])
    imgs = recipe.image(batch)
    assert imgs.shape == (4, 28, 28) and imgs.dtype == np.uint8
    for item, img in zip(batch, imgs):
        np.testing.assert_array_equal(img, recipe.image(item))
    assert not imgs[-1].any()


@pytest.mark.parametrize("func", [recipe.line_vector, recipe.binned_means, recipe.image])
def test_wrong_length_is_rejected(func):
    with pytest.raises(recipe.BadSpectrumError, match="3601"):
        func(np.zeros(3600))
