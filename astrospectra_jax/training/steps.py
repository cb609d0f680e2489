"""The compiled training and evaluation steps, the optimizer and the initial state.

Data parallel over every device: a 1-D mesh ``("data",)``, parameters and optimizer state
replicated, each batch sharded along ``"data"``. Global arrays make the loss, gradients and
batch-norm statistics global-batch quantities, so 1, 8 or 256 devices compute the same thing.
The training state is one pytree; a compiled *chunk* runs ``steps_per_call`` steps under
``lax.scan`` (unrolled on CPU, see ``scan_steps``) with the state donated, so Python only
dispatches one call per chunk.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from astrospectra_jax.training import ensemble, input_pipeline, sharding
from astrospectra_jax.training.configuration import choice, non_negative, require
from astrospectra_jax.training.state import AUGMENT_STREAM, DATA_STREAM, DTYPES, TrainState

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "warmup_cosine")
__all__ = ["DTYPES", "OPTIMIZERS", "SCHEDULES", "Steps", "make_optimizer", "make_steps"]


# ----------------------------------------------------------------------------- optimizer

def make_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int
                  ) -> Callable[[int], float]:
    """``config.schedule`` of the learning rate over ``num_epochs`` epochs."""
    opt = config.optimizer
    require(opt.learning_rate > 0, "optimizer.learning_rate", opt.learning_rate, "must be positive")
    total = config.num_epochs * steps_per_epoch
    name = choice("schedule", config.schedule, SCHEDULES)
    if name == "constant":
        return optax.constant_schedule(opt.learning_rate)
    if name == "cosine":
        return optax.cosine_decay_schedule(opt.learning_rate, total)
    require(config.warmup_epochs >= 0, "warmup_epochs", config.warmup_epochs, "must be >= 0")
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)
    return optax.warmup_cosine_decay_schedule(0.0, opt.learning_rate, max(warmup, 1), total)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int
                   ) -> tuple[optax.GradientTransformation, Callable[[int], float]]:
    """The optax optimizer and its learning-rate schedule (over ``num_epochs`` epochs)."""
    opt = config.optimizer
    name = choice("optimizer.name", opt.name, OPTIMIZERS)
    require(opt.weight_decay >= 0, "optimizer.weight_decay", opt.weight_decay, "must be >= 0")
    require(0 <= opt.momentum < 1, "optimizer.momentum", opt.momentum, "must be in [0, 1)")
    schedule = make_schedule(config, steps_per_epoch)
    if name == "adamw":
        return optax.adamw(schedule, weight_decay=opt.weight_decay), schedule
    if name == "adam":
        tx = optax.adam(schedule)
    else:
        tx = optax.sgd(schedule, momentum=opt.momentum or None)
    if opt.weight_decay:  # L2 added to the gradient (coupled), as torch's weight_decay
        tx = optax.chain(optax.add_decayed_weights(opt.weight_decay), tx)
    return tx, schedule


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy against (optionally smoothed) one-hot labels."""
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    if smoothing:
        targets = optax.smooth_labels(targets, smoothing)
    return optax.softmax_cross_entropy(logits, targets)


# ----------------------------------------------------------------------------- compiled steps

def resolve_steps_per_call(config: ml_collections.ConfigDict) -> int:
    """``config.steps_per_call``, or when 0 (auto): 1 on CPU (a Python call costs little next to
    a CPU step, and see scan_steps), 20 on accelerators."""
    if non_negative("steps_per_call", config.steps_per_call):
        return config.steps_per_call
    return 1 if jax.default_backend() == "cpu" else 20


def scan_steps(body, carry, xs=None, *, length: int):
    """``lax.scan`` over the steps of a chunk, laid out for the backend.

    On CPU XLA runs convolutions inside loop or conditional bodies several times slower than in
    straight-line code (measured ~6x for SimpleCNN1), so the chunk is fully unrolled there; a
    one-step chunk is a plain call (a length-1 unrolled scan also compiled to the slow
    convolution path). Elsewhere a rolled loop, one step per iteration.
    """
    if length == 1:
        carry, out = body(carry, jax.tree.map(lambda x: x[0], xs))
        return carry, jax.tree.map(lambda x: x[None], out)
    unroll = True if jax.default_backend() == "cpu" else 1
    return jax.lax.scan(body, carry, xs, length=length, unroll=unroll)


class Steps(NamedTuple):
    """The jitted functions of a run (see their docstrings in ``make_steps``)."""

    device_chunk: Callable  # (state, train features, labels, permutations, end) -> (state, metrics)
    stream_chunk: Callable  # (state, features (chunk, B, ...), labels, end) -> (state, metrics)
    epoch_permutations: Callable  # (first epoch) -> data orders of the epochs a chunk can reach
    eval_batch: Callable  # (state or model, features, labels, mask, index) -> sums, predictions


def _forward(graphdef, model_items, x, num_classes: int):
    """Evaluation-mode logits of ``{"params", "model_state"}`` on the model input ``x``."""
    model = nnx.merge(graphdef, model_items["params"], model_items["model_state"], copy=True)
    model.eval()
    return model(x)[..., :num_classes]  # outlier exposure's "other" is no class


def _eval_batch(graphdef, batch_size: int, prep: dict, on_batch, members: ensemble.Members,
                num_classes: int):
    """The (unjitted) evaluation step of ``make_steps``."""

    def eval_batch(state, features, labels, mask, index):
        """Sum of loss, number correct and the predictions of batch ``index`` of a padded split;
        ``state`` a TrainState or its ``model()`` items. An ensemble's step adds the members'
        own (see ``ensemble.combine``); its loss and predictions are the averaged
        probabilities'."""
        state = state.model() if isinstance(state, TrainState) else state
        features, labels, mask = (jax.lax.dynamic_slice_in_dim(a, index * batch_size, batch_size)
                                  for a in (features, labels, mask))
        features = jax.lax.with_sharding_constraint(features, on_batch)
        x = input_pipeline.preprocess(features, **prep)
        mask = mask.astype(jnp.float32)
        if members.size > 1:
            logits = members.lift(lambda m, x: _forward(graphdef, m, x, num_classes))(state, x)
            return ensemble.combine(logits, labels, mask, cross_entropy)
        logits = _forward(graphdef, state, x, num_classes)
        loss_sum = (cross_entropy(logits, labels) * mask).sum()
        predictions = jnp.argmax(logits, -1).astype(jnp.int32)
        correct = ((predictions == labels) * mask).sum()
        return loss_sum, correct, predictions

    return eval_batch


def _train_step(config, graphdef, tx, prep: dict, on_batch):
    """One model's optimizer step ``(state, features, labels, end_step, augment_key)``."""
    max_shift, smoothing = config.augment.max_shift, config.label_smoothing

    def train_step(state, features, labels, end_step, augment_key):
        """One optimizer step; a no-op (state unchanged) once ``state.step >= end_step``, so a
        chunk of fixed length can end early without a second compilation."""
        features = jax.lax.with_sharding_constraint(features, on_batch)
        labels = jax.lax.with_sharding_constraint(labels, on_batch)
        x = input_pipeline.preprocess(features, max_shift=max_shift,
                                      key=jax.random.fold_in(augment_key, state.step), **prep)

        def loss_fn(params):
            # copy: fresh Variables at this trace level, so batch norm may update them
            model = nnx.merge(graphdef, params, state.model_state, copy=True)
            model.train()
            logits = model(x)
            loss = cross_entropy(logits, labels, smoothing).mean()
            _, _, model_state = nnx.split(model, nnx.Param, ...)
            return loss, (logits, model_state)

        (loss, (logits, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates),
                               model_state, opt_state)
        # select, not cond: no control flow around the step (see scan_steps); lax.select
        # also keeps typed PRNG keys typed.
        active = state.step < end_step
        state = jax.tree.map(lambda new, old: jax.lax.select(active, new, old), new_state, state)
        accuracy = (jnp.argmax(logits, -1) == labels).mean()
        return state, {"loss": loss, "accuracy": accuracy}

    return train_step


def _members_step(train_step, members: ensemble.Members, augment_keys):
    """``train_step`` lifted over an ensemble's members: features (K, B, ...), labels (K, B);
    each member steps with its own batch and augmentation key, ``step`` stays shared."""

    def one(member, shared):
        params, model_state, opt_state, features, labels, augment_key = member
        step, end_step = shared
        state, metrics = train_step(TrainState(step, params, model_state, opt_state), features,
                                    labels, end_step, augment_key)
        return (state.params, state.model_state, state.opt_state), metrics

    lifted = members.lift(one)

    def step(state, features, labels, end_step):
        (params, model_state, opt_state), metrics = lifted(
            (state.params, state.model_state, state.opt_state, features, labels, augment_keys),
            (state.step, end_step))
        new_step = jnp.where(state.step < end_step, state.step + 1, state.step)
        return TrainState(new_step, params, model_state, opt_state), metrics

    return step


def make_steps(config, spec, graphdef, tx, mesh, steps_per_epoch: int, num_train: int,
               steps_per_call: int) -> Steps:
    """The jitted training chunks, data order and evaluation step of a run (an ensemble's
    when ``config.ensemble_size > 1``: see ``ensemble``)."""
    members = ensemble.Members.of(config, mesh)
    data_key = members.keys(config.seed, DATA_STREAM)
    augment_key = members.keys(config.seed, AUGMENT_STREAM)
    require(0.0 <= config.label_smoothing < 1.0, "label_smoothing", config.label_smoothing,
            "must be in [0, 1)")
    require(config.augment.max_shift >= 0, "augment.max_shift", config.augment.max_shift,
            "must be >= 0")
    batch_size, chunk = config.batch_size, steps_per_call
    # Epochs a chunk can touch: steps s0 .. s0 + chunk - 1 span at most this many.
    num_permutations = (chunk - 1) // steps_per_epoch + 2
    prep = dict(modality=spec.modality, input_size=config.model.input_size)
    on_batch = sharding.batch_sharded(mesh)
    replicated = sharding.replicated(mesh)
    # Inside shard_map over "member" the batch constraint names "data" of the context mesh.
    train_step = _train_step(config, graphdef, tx, prep, jax.sharding.PartitionSpec(
        sharding.DATA_AXIS) if members.axis == "mesh" else on_batch)
    if members.size > 1:
        train_step = _members_step(train_step, members, augment_key)
        on_members = sharding.member_sharded(mesh, batch=True)
    else:
        train_step = functools.partial(train_step, augment_key=augment_key)

    def epoch_permutations(first_epoch):
        """The data order of epochs ``first_epoch, first_epoch + 1, ...``: as many as a chunk
        starting in ``first_epoch`` can reach (each member's, (K, epochs, N), for an ensemble).
        Computed once per epoch, outside the chunk: a sort of the whole split is not free on
        CPU."""
        epochs = first_epoch + jnp.arange(num_permutations)
        orders = lambda key: jax.vmap(  # noqa: E731
            lambda epoch: input_pipeline.epoch_permutation(key, epoch, num_train))(epochs)
        return orders(data_key) if members.size == 1 else jax.vmap(orders)(data_key)

    def device_chunk(state, train_features, train_labels, permutations, end_step):
        """``chunk`` steps from ``state.step`` (those at or past ``end_step`` are no-ops),
        gathering each batch from the device-resident split in the order ``permutations``
        (from ``epoch_permutations`` of the epoch of ``state.step``)."""
        first_epoch = state.step // steps_per_epoch

        def body(state, _):
            epoch, position = jnp.divmod(state.step, steps_per_epoch)
            indices = lambda p: input_pipeline.batch_indices(  # noqa: E731
                p[epoch - first_epoch], position, batch_size)
            if members.size == 1:
                idx = indices(permutations)
                return train_step(state, jnp.take(train_features, idx, axis=0),
                                  jnp.take(train_labels, idx, axis=0), end_step)
            idx = jax.vmap(indices)(permutations)  # (K, B): each member's own batch
            features, labels = (jax.lax.with_sharding_constraint(
                jnp.take(a, idx, axis=0), on_members) for a in (train_features, train_labels))
            return train_step(state, features, labels, end_step)

        return scan_steps(body, state, length=chunk)

    def stream_chunk(state, features, labels, end_step):
        """Like ``device_chunk`` over given batches: features (chunk, B, ...)."""
        return scan_steps(lambda state, batch: train_step(state, *batch, end_step), state,
                          (features, labels), length=chunk)

    out = replicated
    if members.size > 1:  # the members' state along "member" (replicated without that axis)
        on_state = sharding.member_sharded(mesh)
        out = (TrainState(replicated, on_state, on_state, on_state), replicated)
    train_jit = lambda f: jax.jit(f, donate_argnums=(0,), out_shardings=out)  # noqa: E731
    return Steps(device_chunk=train_jit(device_chunk), stream_chunk=train_jit(stream_chunk),
                 epoch_permutations=jax.jit(epoch_permutations, out_shardings=replicated),
                 eval_batch=jax.jit(_eval_batch(graphdef, batch_size, prep, on_batch, members,
                                                spec.num_classes),
                                    out_shardings=replicated))
