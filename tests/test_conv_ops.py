"""The CPU kernels (models/kernels/cpu/) agree with XLA's own operations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from astrospectra_jax.models import kernels, layers
from astrospectra_jax.models.kernels import cpu
from astrospectra_jax.models.kernels.cpu import chunks, winograd


def _grads(conv_fn, x, w, strides, padding, groups, dn):
    def loss(x, w):
        y = conv_fn(x, w, strides, padding, dimension_numbers=dn, feature_group_count=groups)
        return jnp.sum(jnp.sin(y))
    return jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)


@pytest.mark.parametrize("x_shape,w_shape,strides,padding,groups", [
    ((4, 12, 12, 16), (3, 3, 16, 8), (1, 1), ((1, 1), (1, 1)), 1),
    ((4, 13, 11, 16), (3, 3, 16, 8), (2, 2), ((1, 1), (1, 1)), 1),
    ((3, 9, 9, 16), (5, 5, 16, 4), (1, 2), ((0, 2), (2, 1)), 1),
    ((2, 14, 15, 16), (3, 3, 16, 8), (1, 1), ((1, 1), (1, 1)), 1),  # Winograd (odd width)
    ((4, 8, 8, 32), (1, 1, 32, 8), (1, 1), ((0, 0), (0, 0)), 1),  # 1x1: a channel matmul
    ((4, 9, 9, 16), (1, 1, 16, 8), (2, 2), ((0, 0), (0, 0)), 1),
    ((3, 10, 10, 1), (3, 3, 1, 32), (1, 1), ((1, 1), (1, 1)), 1),  # stem: a sum over taps
    ((2, 11, 9, 1), (5, 5, 1, 6), (2, 1), ((2, 1), (0, 2)), 1),
    ((2, 41, 1), (7, 1, 8), (2,), ((3, 3),), 1),
    ((2, 11, 9, 2), (5, 5, 2, 32), (2, 1), ((2, 2), (1, 2)), 1),  # few inputs: col2im dx
    ((3, 14, 14, 6), (5, 5, 6, 16), (1, 1), ((0, 0), (0, 0)), 1),
    ((4, 8, 8, 32), (3, 3, 1, 32), (1, 1), ((1, 1), (1, 1)), 32),  # depthwise: as taps
    ((3, 9, 8, 24), (3, 3, 1, 24), (2, 2), ((1, 1), (0, 1)), 24),
    ((2, 10, 9, 16), (5, 5, 1, 16), (1, 2), ((2, 2), (2, 1)), 16),
    ((4, 8, 8, 32), (3, 3, 4, 32), (1, 1), ((1, 1), (1, 1)), 8),  # grouped: XLA's own
    ((2, 40, 16), (7, 16, 8), (2,), ((3, 3),), 1),
    # Maps of at most 7x7 output pixels: tap by tap (the ones above with strides too).
    ((4, 2, 2, 16), (3, 3, 16, 8), (1, 1), ((1, 1), (1, 1)), 1),
    ((3, 1, 1, 8), (3, 3, 8, 4), (1, 1), ((1, 1), (1, 1)), 1),
    ((2, 4, 3, 16), (3, 3, 16, 8), (2, 2), ((1, 0), (1, 1)), 1),
    ((2, 3, 4), (5, 4, 8), (2,), ((2, 1),), 1),
    ((2, 2, 4), (5, 4, 8), (3,), ((2, 2),), 1),  # taps that meet only padding
])
def test_weight_and_input_gradients_match_lax(x_shape, w_shape, strides, padding, groups):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(x_shape, dtype=np.float32))
    w = jnp.asarray(rng.standard_normal(w_shape, dtype=np.float32))
    dn = ("NWC", "WIO", "NWC") if len(x_shape) == 3 else ("NHWC", "HWIO", "NHWC")
    np.testing.assert_allclose(
        cpu.conv_general_dilated(x, w, strides, padding, dimension_numbers=dn,
                                  feature_group_count=groups),
        jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dn,
                                     feature_group_count=groups), rtol=1e-4, atol=1e-4)
    expected = _grads(jax.lax.conv_general_dilated, x, w, strides, padding, groups, dn)
    got = _grads(cpu.conv_general_dilated, x, w, strides, padding, groups, dn)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * float(jnp.abs(e).max()))


@pytest.mark.parametrize("batch,chunk_examples", [(1, 1), (6, 2), (6, 6), (64, 4)])
def test_weight_gradient_over_batch_chunks(monkeypatch, batch, chunk_examples):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((batch, 12, 12, 3), dtype=np.float32))
    g = jnp.asarray(rng.standard_normal((batch, 6, 6, 5), dtype=np.float32))
    w = jnp.zeros((3, 3, 3, 5))
    # Chunks of chunk_examples: 6x6 output positions times 3x3x3 patch values, float32.
    monkeypatch.setattr(chunks, "PATCH_CHUNK_BYTES", chunk_examples * 36 * 27 * 4)
    strides, padding = (2, 2), ((1, 0), (1, 1))
    _, vjp = jax.vjp(lambda w: jax.lax.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")), w)
    np.testing.assert_allclose(cpu.weight_gradient(x, g, w.shape, strides, padding),
                               vjp(g)[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("window,stride,padding,ceil_mode,size", [
    (2, 2, 0, False, 8), (3, 2, 1, False, 9), (3, 1, 1, False, 7), (3, 2, 0, True, 14),
    (2, 2, 0, True, 7)])
def test_max_pool_matches_reduce_window_with_ties(window, stride, padding, ceil_mode, size):
    rng = np.random.default_rng(2)
    # Integer values make ties common: the gradient must go to the same element.
    x = jnp.asarray(rng.integers(0, 3, (2, size, size, 3)).astype(np.float32))
    pads = tuple(layers._pool_padding(size, window, stride, padding, ceil_mode)
                 for _ in range(2))

    def reference(x):
        return nnx.max_pool(x, (window, window), strides=(stride, stride), padding=pads)

    def ours(x):
        return layers.max_pool(x, window, stride, padding, ceil_mode, kernels=kernels.CPU)

    np.testing.assert_array_equal(ours(x), reference(x))
    cot = jnp.asarray(rng.standard_normal(reference(x).shape, dtype=np.float32))
    grad = lambda f: jax.grad(lambda x: jnp.sum(f(x) * cot))(x)  # noqa: E731
    np.testing.assert_allclose(grad(ours), grad(reference), rtol=1e-6)


@pytest.mark.parametrize("chunk_examples", [1, 2, 3])
def test_depthwise_weight_gradient_over_batch_chunks(monkeypatch, chunk_examples):
    """The depthwise filter gradient summed over chunks of the batch (a scan) equals XLA's."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((6, 7, 7, 8), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, 1, 8), dtype=np.float32))
    monkeypatch.setattr(chunks, "CHUNK_BYTES", chunk_examples * 7 * 7 * 8 * 4)
    dn = ("NHWC", "HWIO", "NHWC")
    args = ((2, 2), ((1, 1), (1, 1)), 8, dn)
    expected = _grads(jax.lax.conv_general_dilated, x, w, *args)
    got = _grads(cpu.conv_general_dilated, x, w, *args)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-4 * float(jnp.abs(e).max()))


@pytest.mark.parametrize("shape", [(2, 14, 14, 8), (3, 15, 16, 4)])
def test_winograd_forward_matches_lax(shape):
    """The training forward pass of stride-1 3x3 convolutions (Winograd), odd sizes included."""
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, shape[-1], 6), dtype=np.float32))
    assert winograd.applies(x, w, (1, 1), ((1, 1), (1, 1)))
    expected = jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(jax.jit(winograd.conv3x3, static_argnums=2)(x, w, None),
                               expected, rtol=1e-5, atol=1e-5 * float(jnp.abs(expected).max()))


@pytest.mark.parametrize("activation", [nnx.relu, nnx.relu6, None])
def test_training_batch_norm_matches_nnx(activation):
    """ConvBN's fused training batch norm: the same output, gradients and running statistics
    as nnx.BatchNorm followed by the activation."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((6, 5, 5, 3), dtype=np.float32) * 3 + 1)
    cotangent = jnp.asarray(rng.standard_normal((6, 5, 5, 8), dtype=np.float32))

    def run(block_kernels):
        block = layers.ConvBN(3, 8, 3, activation=activation, kernels=block_kernels,
                              dtype=jnp.float32, param_dtype=jnp.float32, rngs=nnx.Rngs(0))
        block.bn.scale[...] = jnp.linspace(0.5, 1.5, 8)
        block.bn.bias[...] = jnp.linspace(-1.0, 1.0, 8)
        block.train()

        def loss(block, x):
            return jnp.sum(block(x) * cotangent)
        grads_x = nnx.grad(loss, argnums=(0, 1))(block, x)
        return nnx.state(grads_x[0], nnx.Param), grads_x[1], nnx.state(block, nnx.BatchStat)

    fast, reference = run(kernels.CPU), run(kernels.XLA)
    for got, expected in zip(jax.tree.leaves(fast), jax.tree.leaves(reference)):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * float(
            jnp.abs(expected).max()))


@pytest.mark.parametrize("block_kernels", [kernels.XLA, kernels.CPU], ids=["xla", "cpu"])
def test_conv_bn_updates_its_running_statistics(block_kernels):
    """The kernels only return the batch statistics; ConvBN keeps the running averages:
    momentum * old + (1 - momentum) * batch after one training-mode call."""
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((4, 6, 6, 3), dtype=np.float32) * 2 + 0.5)
    block = layers.ConvBN(3, 5, 3, kernels=block_kernels, dtype=jnp.float32,
                          param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    old_mean, old_var = jnp.linspace(-1.0, 1.0, 5), jnp.linspace(0.5, 2.0, 5)
    block.bn.mean[...], block.bn.var[...] = old_mean, old_var
    block.train()
    y = np.asarray(block.conv(x), np.float64).reshape(-1, 5)
    block(x)
    momentum = block.bn.momentum
    np.testing.assert_allclose(block.bn.mean[...], momentum * old_mean + (1 - momentum)
                               * y.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(block.bn.var[...], momentum * old_var + (1 - momentum)
                               * y.var(0), rtol=1e-5, atol=1e-6)
    block.eval()
    block(x)  # evaluation reads the running averages and leaves them alone
    np.testing.assert_allclose(block.bn.mean[...], momentum * old_mean + (1 - momentum)
                               * y.mean(0), rtol=1e-5, atol=1e-6)


def test_resolve_picks_the_cpu_kernels_on_the_cpu_backend_only():
    assert kernels.resolve("xla") is kernels.XLA and kernels.resolve("cpu") is kernels.CPU
    on_cpu = jax.default_backend() == "cpu"
    assert kernels.resolve("auto") is (kernels.CPU if on_cpu else kernels.XLA)
    assert kernels.resolve(kernels.XLA) is kernels.XLA
    with pytest.raises(ValueError, match="'fast'.*auto, xla, cpu"):
        kernels.resolve("fast")
