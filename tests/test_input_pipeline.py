"""The on-device input pipeline: data order, batching, preprocessing, the 224 resize, padding."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from astrospectra_jax.training import input_pipeline as ip
from astrospectra_jax.training import sharding


def test_epoch_permutation_is_a_deterministic_permutation_per_seed_and_epoch():
    key = jax.random.key(7)
    first = np.asarray(ip.epoch_permutation(key, 0, 1000))
    np.testing.assert_array_equal(np.sort(first), np.arange(1000))
    np.testing.assert_array_equal(first, np.asarray(ip.epoch_permutation(jax.random.key(7), 0,
                                                                         1000)))
    assert not np.array_equal(first, np.asarray(ip.epoch_permutation(key, 1, 1000)))
    assert not np.array_equal(first, np.asarray(ip.epoch_permutation(jax.random.key(8), 0,
                                                                     1000)))
    # Inside jit, with a traced epoch, it is the same permutation.
    jitted = jax.jit(lambda e: ip.epoch_permutation(key, e, 1000))
    np.testing.assert_array_equal(np.asarray(jitted(jnp.int32(0))), first)


def test_batches_cover_an_epoch_without_repeats_and_drop_the_remainder():
    n, batch = 1000, 64
    steps = ip.steps_per_epoch(n, batch)
    assert steps == 15  # 1000 // 64; the last 40 of each shuffled epoch are dropped
    perm = ip.epoch_permutation(jax.random.key(0), 3, n)
    batches = [np.asarray(ip.batch_indices(perm, jnp.int32(p), batch)) for p in range(steps)]
    seen = np.concatenate(batches)
    assert len(seen) == steps * batch and len(np.unique(seen)) == len(seen)
    np.testing.assert_array_equal(seen, np.asarray(perm)[:steps * batch])


def test_images_scale_to_unit_range_and_lines_are_standardised():
    images = jnp.asarray(np.array([0, 51, 255], np.uint8).reshape(1, 3, 1, 1).repeat(2, 0))
    x = ip.to_float(images, "image")
    assert x.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(x).ravel()[:3], [0.0, 0.2, 1.0])
    lines = jnp.asarray(np.random.default_rng(0).normal(500.0, 80.0, (4, 721)), jnp.float32)
    z = np.asarray(ip.to_float(lines, "line"))
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=1), 1.0, atol=1e-4)
    flat = np.asarray(ip.to_float(jnp.full((1, 721), 3.0), "line"))
    assert np.isfinite(flat).all()  # a constant spectrum does not divide by zero


def test_resize_to_224_gives_the_torchvision_input_shape():
    images = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
    big = ip.preprocess((images * 255).astype(jnp.uint8), modality="image", input_size=224)
    assert big.shape == (3, 224, 224, 1) and big.dtype == jnp.float32
    constant = ip.resize(jnp.full((2, 28, 28, 1), 0.5), 224)
    np.testing.assert_allclose(np.asarray(constant), 0.5, atol=1e-6)
    # Bilinear: values stay within the input range and the mean is nearly preserved.
    assert float(big.min()) >= 0.0 and float(big.max()) <= 1.0
    small = ip.preprocess((images * 255).astype(jnp.uint8), modality="image", input_size=28)
    assert small.shape == (3, 28, 28, 1)
    assert abs(float(big.mean()) - float(small.mean())) < 0.01


def test_random_shift_moves_each_example_along_wavelength_within_bounds():
    x = jnp.tile(jnp.arange(784, dtype=jnp.float32).reshape(1, 28, 28, 1), (16, 1, 1, 1))
    shifted = np.asarray(ip.random_shift(x, jax.random.key(1), 3)).reshape(16, 784)
    offsets = shifted[:, 100] - 100  # away from the edges the shift is a plain translation
    assert set(offsets.tolist()) <= set(range(-3, 4)) and len(set(offsets.tolist())) > 1
    for row, offset in zip(shifted, offsets, strict=True):
        np.testing.assert_array_equal(row[3:-3], np.arange(3, 781) + offset)
        assert row.min() >= 0 and row.max() <= 783  # edges repeat the edge value
    same = ip.preprocess(x.astype(jnp.uint8), modality="image", input_size=28, max_shift=0,
                         key=jax.random.key(1))
    np.testing.assert_allclose(np.asarray(same), np.asarray(x.astype(jnp.uint8)) / 255.0,
                               rtol=1e-6)


@pytest.mark.parametrize("n, batch, total", [(300, 32, 320), (320, 32, 320), (5, 32, 32)])
def test_pad_to_batches_masks_exactly_the_padding(n, batch, total):
    features = np.arange(n * 4, dtype=np.uint8).reshape(n, 2, 2, 1)
    labels = np.arange(n, dtype=np.int32) % 3
    padded, padded_labels, mask = ip.pad_to_batches(features, labels, batch)
    assert padded.shape == (total, 2, 2, 1) and padded_labels.shape == mask.shape == (total,)
    assert mask.sum() == n and mask[:n].all() and not mask[n:].any()
    np.testing.assert_array_equal(padded[:n], features)
    np.testing.assert_array_equal(padded_labels[:n], labels)


def test_replicated_split_and_batch_sharding_over_the_mesh():
    mesh = sharding.make_mesh()
    assert mesh.shape == {"data": jax.device_count()}
    data = np.arange(64, dtype=np.int32)
    on_device = sharding.put_replicated(data, mesh)
    assert on_device.sharding.is_fully_replicated
    np.testing.assert_array_equal(np.asarray(on_device), data)
    batch = sharding.global_batch(np.arange(8 * jax.device_count(), dtype=np.float32), mesh)
    assert batch.shape == (8 * jax.device_count(),)
    assert batch.sharding.spec == sharding.batch_sharded(mesh).spec
