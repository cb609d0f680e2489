"""Model zoo: registry, torchvision parameter counts, shapes, train/eval modes, learning, bf16."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from astrospectra_jax import models
from astrospectra_jax.models import kernels, layers
from astrospectra_jax.training import input_pipeline

BIG_MODELS = ["alexnet", "vgg16", "googlenet", "resnet18", "mobilenetv2"]

# torchvision's architectures with a 1-channel stem and a 3-class head (weights + biases,
# batch-norm scale + bias, no running statistics).
TORCHVISION_COUNTS = {
    "resnet18": 11_171_779,
    "alexnet": 57_000_643,
    "vgg16": 134_271_683,
    "mobilenetv2": 2_227_139,
    "googlenet": 5_596_707,
}


def rngs(seed=0):
    # RBG keys: same model code, but on CPU their random ops compile ~4x faster than
    # threefry's, and eager initialisation compiles one per parameter shape.
    return nnx.Rngs(params=jax.random.key(seed, impl="rbg"),
                    dropout=jax.random.key(seed + 1, impl="rbg"))


# The tests run a handful of steps, so XLA's compile time dominates: optimising less pays.
QUICK_COMPILE = {"xla_backend_optimization_level": 0}


def batch(name, size, n, seed=0):
    """A fixed, standardised batch with learnable labels: class k is pattern k plus noise.
    Line vectors are flux-like values, far from unit scale, standardised by the input
    pipeline as in training and prediction."""
    rng = np.random.default_rng(seed)
    shape = (n, size) if models.is_line_model(name) else (n, size, size, 1)
    labels = np.arange(n) % 3
    x = rng.standard_normal((3,) + shape[1:])[labels] + 0.3 * rng.standard_normal(shape)
    x = jnp.asarray(x, jnp.float32)
    if models.is_line_model(name):
        x = line_input(100.0 * (2.0 + x), size)
    return x, jnp.asarray(labels)


def line_input(flux, size):
    """Stored line vectors -> model input, through the training input pipeline."""
    return input_pipeline.preprocess(flux, modality="line", input_size=size)


@functools.cache
def abstract(name, size, dtype=jnp.float32, kernels="auto"):
    """(graphdef, shape-only state) of a model, built without allocating weights."""
    return nnx.split(nnx.eval_shape(lambda: models.create(
        name, input_size=size, kernels=kernels, dtype=dtype, rngs=rngs())))


@functools.cache
def initial_state(name, size):
    """float32 weights from the model's own initialisers, built once per (name, size): eager
    initialisation compiles one small program per parameter shape, which dominates CPU time."""
    return nnx.state(models.create(name, input_size=size, rngs=rngs()))


def fresh_model(name, size, dtype=jnp.float32):
    """A new model (own Variables) holding the cached initial weights."""
    graphdef, _ = abstract(name, size, dtype)
    return nnx.merge(graphdef, initial_state(name, size), copy=True)


def stand_in_state(name, size, dtype=jnp.float32, kernels="auto"):
    """Weights for forward-only checks: He-uniform kernels drawn in numpy, identity batch norm.
    Drawing AlexNet's and VGG16's 57-134M random values on CPU costs more than their forward."""
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        field = path[-2].key
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key(0, impl="rbg")
        if field == "kernel":
            limit = math.sqrt(6.0 / math.prod(leaf.shape[:-1]))
            values = rng.random(leaf.shape, dtype=np.float32)
            return jnp.asarray((values - 0.5) * (2 * limit))
        return (jnp.ones if field in ("scale", "var") else jnp.zeros)(leaf.shape, leaf.dtype)

    graphdef, state = abstract(name, size, dtype, kernels)
    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


@functools.cache
def _compiled(fn, graphdef, quick):
    def pure(state, *args):
        objects = nnx.merge(graphdef, state)
        return fn(*objects, *args), nnx.state(objects)

    return jax.jit(pure, compiler_options=QUICK_COMPILE if quick else None)


def call_jitted(fn, objects, *args, quick=True):
    """fn(*objects, *args) under jax.jit (split/merge, as nnx.jit takes no compiler options);
    state changes (batch statistics, optimiser, RNG counts) are written back to ``objects``."""
    graphdef, state = nnx.split(objects)
    out, state = _compiled(fn, graphdef, quick)(state, *args)
    nnx.update(objects, state)
    return out


def apply(model, x):
    return model(x)


def forward(model, x):
    return call_jitted(apply, (model,), x)


def cross_entropy(model, x, labels):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), labels).mean()


def test_registry():
    assert models.MODEL_NAMES == ("simplecnn1", "simplecnn2", "lenet", "alexnet", "vgg16",
                                  "googlenet", "resnet18", "mobilenetv2", "conv1d")
    assert models.input_sizes("resnet18") == (28, 224)
    assert models.input_sizes("lenet") == (28,)
    assert models.input_sizes("conv1d") == (721,)
    assert models.is_line_model("conv1d") and not models.is_line_model("vgg16")


@pytest.mark.parametrize("call", [
    lambda: models.create("resnet50", rngs=rngs()),
    lambda: models.input_sizes("resnet50"),
    lambda: models.is_line_model("resnet50"),
])
def test_unknown_name_lists_known_models(call):
    with pytest.raises(ValueError, match=r"resnet50.*simplecnn1.*conv1d"):
        call()


@pytest.mark.parametrize("name,size", [("lenet", 224), ("resnet18", 32), ("conv1d", 28)])
def test_unsupported_input_size(name, size):
    allowed = ", ".join(map(str, models.input_sizes(name)))
    with pytest.raises(ValueError, match=rf"input_size={size}.*{allowed}"):
        models.create(name, input_size=size, rngs=rngs())


def test_wrong_input_shape_is_a_clear_error():
    model = nnx.merge(*abstract("resnet18", 224))
    with pytest.raises(ValueError, match=r"input_size=224.*\(B, 224, 224, 1\).*\(2, 28, 28, 1\)"):
        model(jnp.zeros((2, 28, 28, 1)))
    line = nnx.merge(*abstract("conv1d", 721))
    with pytest.raises(ValueError, match="721"):
        line(jnp.zeros((2, 720)))


@pytest.mark.parametrize("name,expected", [*TORCHVISION_COUNTS.items(), ("lenet", 61_111)])
def test_parameter_counts(name, expected):
    model = nnx.merge(*abstract(name, max(models.input_sizes(name))))
    assert models.param_count(model) == expected
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert sum(math.prod(leaf.shape) for leaf in leaves) == expected


def test_default_input_size_is_the_first_supported():
    for name, size in [("conv1d", 721), ("mobilenetv2", 28), ("lenet", 28)]:
        assert nnx.eval_shape(lambda: models.create(name, rngs=rngs())).input_size == size


@pytest.mark.parametrize("name,size", [(n, s) for n in models.MODEL_NAMES
                                       for s in models.input_sizes(n)])
def test_output_shape(name, size):
    model = nnx.merge(*abstract(name, size))
    model.eval()
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct(batch(name, size, 2)[0].shape, jnp.float32)
    logits = jax.eval_shape(lambda state, x: nnx.merge(graphdef, state)(x), state, x)
    assert logits.shape == (2, 3) and logits.dtype == jnp.float32


def bfloat16_forward(model, name, size, n):
    """Checks the eval-mode logits of a bfloat16-compute model with float32 weights."""
    model.eval()
    params = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert {p.dtype for p in params} == {jnp.dtype(jnp.float32)}  # param_dtype stays float32
    logits = forward(model, batch(name, size, n)[0])
    assert logits.shape == (n, 3) and logits.dtype == jnp.float32
    assert np.isfinite(np.asarray(logits)).all()


@pytest.mark.parametrize("name", BIG_MODELS)
def test_torchvision_size_forward_in_bfloat16(name):
    # One compile covers both the 224 architecture and bfloat16 compute for the big models.
    bfloat16_forward(stand_in_state(name, 224, jnp.bfloat16), name, 224, 1)


@pytest.mark.parametrize("name", [n for n in models.MODEL_NAMES if n not in BIG_MODELS])
def test_native_size_forward_in_bfloat16(name):
    size = models.input_sizes(name)[0]
    bfloat16_forward(fresh_model(name, size, jnp.bfloat16), name, size, 2)


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_convolutions_compute_in_bfloat16(name):
    size = models.input_sizes(name)[0]
    model = nnx.merge(*abstract(name, size, jnp.bfloat16))
    model.eval()
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct(batch(name, size, 2)[0].shape, jnp.float32)
    jaxpr = jax.make_jaxpr(lambda s, x: nnx.merge(graphdef, s)(x))(state, x).jaxpr
    # With the CPU kernels some convolutions are matrix products, some inside loops
    # (models/kernels/cpu/): every product's operands must be bfloat16 (accumulating in
    # float32 is allowed).
    operand_dtypes = [[v.aval.dtype for v in eqn.invars]
                      for eqn in _equations(jaxpr)
                      if eqn.primitive.name in ("conv_general_dilated", "dot_general")]
    assert operand_dtypes and all(d == jnp.bfloat16 for ds in operand_dtypes for d in ds)


def _equations(jaxpr):
    """A jaxpr's equations, those of nested jaxprs (jit, scan, custom_vjp bodies) included."""
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


# AlexNet and VGG16 have no batch norm, and 4096/512-wide dense layers: Adam at 1e-3 overshoots,
# and dropout is their only train-mode layer; on a 3-example batch its noise swamps six steps of
# progress, so they take their steps without it (dropout is exercised by the other models).
# They also take more steps, over 57M/15M parameters: optimised code pays for its compile there.
LEARNING_RATES = {"alexnet": 1e-4, "vgg16": 1e-4}
UPDATES = {"alexnet": 6, "vgg16": 6}
STEPS_WITHOUT_DROPOUT = {"alexnet", "vgg16"}


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_adam_steps_lower_the_loss(name):
    size = models.input_sizes(name)[0]
    model = fresh_model(name, size)
    model.train()  # batch statistics (and their running averages), dropout
    optimizer = nnx.Optimizer(model, optax.adam(LEARNING_RATES.get(name, 1e-3)), wrt=nnx.Param)
    x, labels = batch(name, size, 3)
    without_dropout = name in STEPS_WITHOUT_DROPOUT

    def step(model, optimizer):
        view = nnx.view(model, deterministic=True) if without_dropout else model
        loss, grads = nnx.value_and_grad(cross_entropy)(view, x, labels)
        optimizer.update(model, grads)
        return loss

    # Each step returns the loss before its update: the last one is the loss after the updates.
    losses = [float(call_jitted(step, (model, optimizer), quick=name not in UPDATES))
              for _ in range(UPDATES.get(name, 3) + 1)]
    assert np.isfinite(losses).all()
    assert losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("name", models.MODEL_NAMES)
@pytest.mark.parametrize("choice", ["xla", "cpu"])
def test_every_layer_gets_the_chosen_kernels(name, choice):
    chosen = models.kernels.resolve(choice)
    model = nnx.merge(*abstract(name, models.input_sizes(name)[0], kernels=choice))
    nodes = [node for _, node in nnx.iter_graph(model)]
    assert {n.conv_general_dilated for n in nodes if isinstance(n, nnx.Conv)} == {
        chosen.conv_general_dilated}
    assert {n.kernels for n in nodes if hasattr(n, "kernels")} == {chosen}


# The CPU kernels sum in other orders than XLA (Winograd, batch chunks, taps), so float32
# rounding differs, and the stand-in networks amplify it in their gradients: noise of 1e-5 on
# ResNet-18's input moves XLA's own gradient by 1e-2 (relative L2). Hence: logits within 1e-4
# of their largest magnitude, running statistics within 1e-4 of the largest statistic, all
# parameter gradients as one vector within 2e-2 in relative L2 norm (measured 2026-12-03:
# ResNet-18 6e-3, MobileNetV2 5e-3, AlexNet 2e-4, the others <= 1e-5).
KERNEL_OUTPUT_TOLERANCE, KERNEL_GRADIENT_TOLERANCE = 1e-4, 2e-2
# GoogLeNet's training step compiles for a minute on a 2-core CPU: its layers are checked by
# test_every_layer_gets_the_chosen_kernels, the kernels on the same layer kinds here.
COMPARED_MODELS = [n for n in models.MODEL_NAMES if n != "googlenet"]


@pytest.mark.parametrize("name", COMPARED_MODELS)
def test_cpu_kernels_match_xla_kernels(name):
    """One training-mode forward and backward pass (batch statistics, no dropout) of the same
    weights built with each kernel set: same logits, parameter gradients and running stats."""
    size = models.input_sizes(name)[0]
    x, labels = batch(name, size, 4)

    def logits_and_loss(model):
        logits = model(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

    def step(model):
        view = nnx.view(model, deterministic=True, raise_if_not_found=False)
        (_, logits), grads = nnx.value_and_grad(logits_and_loss, has_aux=True)(view)
        return logits, grads

    outcomes = {}
    for choice in ("xla", "cpu"):
        model = stand_in_state(name, size, kernels=choice)
        model.train()
        logits, grads = call_jitted(step, (model,))
        outcomes[choice] = (logits, jax.tree.leaves(nnx.state(grads, nnx.Param)),
                            jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    (logits, grads, stats), (ref_logits, ref_grads, ref_stats) = outcomes["cpu"], outcomes["xla"]
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=KERNEL_OUTPUT_TOLERANCE * float(
        jnp.abs(ref_logits).max()))
    stat_scale = max(float(jnp.abs(s).max()) for s in ref_stats) if ref_stats else 0.0
    for got, expected in zip(stats, ref_stats, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0,
                                   atol=KERNEL_OUTPUT_TOLERANCE * stat_scale)
    flat, ref_flat = (jnp.concatenate([g.ravel() for g in gs]) for gs in (grads, ref_grads))
    error = float(jnp.linalg.norm(flat - ref_flat) / jnp.linalg.norm(ref_flat))
    assert error <= KERNEL_GRADIENT_TOLERANCE, error


def test_train_and_eval_modes():
    model = fresh_model("simplecnn2", 28)
    x, _ = batch("simplecnn2", 28, 4)
    stats = lambda: np.asarray(model.bn_fc1.mean[...]).copy()  # noqa: E731
    model.eval()
    before = stats()
    np.testing.assert_array_equal(forward(model, x), forward(model, x))  # no dropout
    np.testing.assert_array_equal(stats(), before)  # running statistics used, not updated
    model.train()
    first, second = forward(model, x), forward(model, x)
    assert not np.allclose(first, second)  # fresh dropout masks from the "dropout" stream
    assert not np.allclose(stats(), before)  # running statistics updated


def test_conv1d_accepts_both_layouts_and_any_flux_scale():
    """(B, 721) and (B, 721, 1) alike; the input pipeline's per-spectrum standardisation makes
    the logits indifferent to the flux scale."""
    model = fresh_model("conv1d", 721)
    model.eval()
    flux = 100.0 * (2.0 + jnp.asarray(np.random.default_rng(0).standard_normal((3, 721)),
                                      jnp.float32))
    x = line_input(flux, 721)
    logits = forward(model, x)
    np.testing.assert_allclose(forward(model, x[..., None]), logits, rtol=1e-6)
    np.testing.assert_allclose(forward(model, line_input(1e-3 * flux, 721)), logits, rtol=1e-4,
                               atol=1e-5)


def features_and_heads(model, x):
    features = model.features(x)
    return model(x), model.classify(features), model.classifier(features), features


@pytest.mark.parametrize("name", models.MODEL_NAMES)
def test_logits_are_the_classifier_over_the_features(name):
    """features(x) is the penultimate representation (B, D), the final dense layer's input:
    model(x) == classify(features(x)) == classifier(features(x)) in evaluation mode."""
    size = models.input_sizes(name)[0]
    model = stand_in_state(name, size, kernels="xla")
    model.eval()
    x, _ = batch(name, size, 2)
    logits, classified, dense, features = call_jitted(features_and_heads, (model,), x)
    assert features.shape == (2, model.classifier.in_features)
    np.testing.assert_allclose(classified, logits, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dense, logits, rtol=1e-6, atol=1e-6)


def test_max_pool_matches_torch_output_sizes():
    # torch: MaxPool2d(3, 2, ceil_mode=True) 112 -> 56; MaxPool2d(2, ceil_mode=True) 7 -> 4;
    # MaxPool2d(3, 2, padding=1) 112 -> 56; MaxPool2d(3, 2) 55 -> 27.
    pool = functools.partial(layers.max_pool, kernels=kernels.XLA)
    assert pool(jnp.zeros((1, 112, 112, 1)), 3, 2, ceil_mode=True).shape[1] == 56
    assert pool(jnp.zeros((1, 7, 7, 1)), 2, ceil_mode=True).shape[1] == 4
    assert pool(jnp.zeros((1, 112, 112, 1)), 3, 2, padding=1).shape[1] == 56
    assert pool(jnp.zeros((1, 55, 55, 1)), 3, 2).shape[1] == 27
    # Padding never wins the max, even for negative inputs.
    assert float(pool(-jnp.ones((1, 7, 7, 1)), 2, ceil_mode=True).max()) == -1.0


def test_adaptive_avg_pool_matches_torch_bins():
    x = jnp.arange(2 * 5 * 7 * 3, dtype=jnp.float32).reshape(2, 5, 7, 3)
    pooled = np.asarray(layers.adaptive_avg_pool(x, (3, 4)))
    for i in range(3):
        for j in range(4):
            rows = slice(i * 5 // 3, math.ceil((i + 1) * 5 / 3))
            cols = slice(j * 7 // 4, math.ceil((j + 1) * 7 / 4))
            np.testing.assert_allclose(pooled[:, i, j], np.asarray(x)[:, rows, cols].mean((1, 2)))
    assert layers.adaptive_avg_pool(x, (5, 7)) is x
