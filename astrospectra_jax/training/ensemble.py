"""Ensembles: ``config.ensemble_size`` independently initialised models trained in one program.

Member ``k`` is the model a single run with seed ``config.seed + k`` trains: its own
initialisation, data order, augmentation and dropout keys, derived from that seed exactly as a
single run derives them (``state``'s streams). The state carries a leading member axis in
``params``, ``model_state`` and ``opt_state``; ``step`` is shared. The single-model step is the
unit, lifted over the member axis (``Members.lift``) in one of three ways
(``config.ensemble_axis``, recorded in results.json as ``member_axis``):

- ``"mesh"``: members on different devices, a 2-D mesh ``("member", "data")`` and ``shard_map``
  over ``"member"`` (each member's batch sharded along ``"data"`` within its row of devices).
  ``auto`` picks it when the device count is a multiple of (and at least) the ensemble size.
- ``"map"``: ``lax.map`` over members on every device, one member after another inside one
  compiled program. ``auto`` picks it on CPU otherwise: a vmapped convolution becomes a grouped
  convolution, slow on XLA:CPU (benchmarks/README.md, "Ensembles").
- ``"vmap"``: ``jax.vmap`` over members (``auto`` on GPU/TPU otherwise): one wider program
  that fills an accelerator a single small model leaves idle.

``ensemble_size = 1`` is a single run, the code path of before. The tf.data pipeline streams
one data order per run, so an ensemble is refused there (ConfigError).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from astrospectra_jax.training import sharding
from astrospectra_jax.training.configuration import ConfigError, choice, positive

AXES = ("auto", "map", "vmap", "mesh")


def size(config) -> int:
    """``config.ensemble_size`` (1 where a config predates it)."""
    return positive("ensemble_size", int(config.get("ensemble_size", 1)))


def resolve_axis(config) -> str:
    """How the members of ``config`` lie: "mesh", "map" or "vmap" ("none" for one model)."""
    k = size(config)
    axis = choice("ensemble_axis", config.get("ensemble_axis", "auto"), AXES)
    if k == 1:
        return "none"
    devices = jax.device_count()
    fits_mesh = devices >= k and devices % k == 0
    if axis == "mesh" and not fits_mesh:
        raise ConfigError(f"invalid config: config.ensemble_axis='mesh' needs a device count "
                          f"that is a multiple of config.ensemble_size={k} ({devices} devices)")
    if config.get("input_pipeline", "device") != "device":
        raise ConfigError(f"invalid config: config.ensemble_size={k} needs "
                          f"config.input_pipeline='device' (got {config.input_pipeline!r}): "
                          "tf.data streams one data order per run")
    if axis != "auto":
        return axis
    if fits_mesh and devices > 1:
        return "mesh"
    return "map" if jax.default_backend() == "cpu" else "vmap"


def make_mesh(config):
    """The mesh of a run: 2-D ``("member", "data")`` for a "mesh" ensemble, else 1-D."""
    return sharding.make_mesh(size(config) if resolve_axis(config) == "mesh" else 1)


def seeds(config) -> list[int]:
    return [int(config.seed) + k for k in range(size(config))]


def stack(trees: list) -> Any:
    """Pytrees of equal structure stacked along a new leading (member) axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


@dataclasses.dataclass(frozen=True)
class Members:
    """The ensemble of a run: its size, member axis, mesh, and the lift over members."""

    size: int
    axis: str  # "none" (one model), "map", "vmap" or "mesh"
    mesh: Any

    @classmethod
    def of(cls, config, mesh) -> Members:
        return cls(size(config), resolve_axis(config), mesh)

    def keys(self, seed: int, stream: int) -> jax.Array:
        """The key of ``stream`` for each member (a single key for one model)."""
        key = lambda s: jax.random.fold_in(jax.random.key(s), stream)  # noqa: E731
        if self.size == 1:
            return key(seed)
        return jax.vmap(key)(jnp.arange(seed, seed + self.size, dtype=jnp.uint32))

    def lift(self, fn: Callable) -> Callable:
        """``fn(member_args, shared_args)`` over the leading member axis of ``member_args``
        (outputs get the member axis); ``shared_args`` are the same for every member."""
        if self.axis == "vmap":
            return jax.vmap(fn, in_axes=(0, None))
        if self.axis == "map":
            return lambda members, shared: jax.lax.map(lambda m: fn(m, shared), members)
        if self.axis != "mesh":
            raise ValueError(f"no member axis to lift over ({self.axis!r})")

        def one_per_device(members, shared):  # each row of devices holds one member
            out = fn(jax.tree.map(lambda x: x[0], members), shared)
            return jax.tree.map(lambda x: x[None], out)

        return jax.shard_map(one_per_device, mesh=self.mesh,
                             in_specs=(P(sharding.MEMBER_AXIS), P()),
                             out_specs=P(sharding.MEMBER_AXIS),
                             axis_names={sharding.MEMBER_AXIS}, check_vma=False)


def combine(logits: jax.Array, labels: jax.Array, mask: jax.Array, loss_fn) -> tuple:
    """Per-member (K, B, C) logits of one evaluation batch -> (ensemble loss sum, correct,
    predictions, members' loss sums (K,), correct (K,), predictions (K, B)); the ensemble
    predicts with the members' averaged probabilities (loss: their negative log)."""
    member_loss = (jax.vmap(loss_fn, in_axes=(0, None))(logits, labels) * mask).sum(-1)
    member_predictions = jnp.argmax(logits, -1).astype(jnp.int32)
    member_correct = ((member_predictions == labels) * mask).sum(-1)
    probabilities = jax.nn.softmax(logits.astype(jnp.float32)).mean(0)
    picked = jnp.take_along_axis(probabilities, labels[:, None], axis=-1)[:, 0]
    loss = (-jnp.log(jnp.maximum(picked, 1e-30)) * mask).sum()
    predictions = jnp.argmax(probabilities, -1).astype(jnp.int32)
    correct = ((predictions == labels) * mask).sum()
    return loss, correct, predictions, member_loss, member_correct, member_predictions


def uncertainty(member_probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """(K, N, C) member probabilities -> ``probabilities`` (N, C, the mean), ``disagreement``
    (N: mutual information between the prediction and the members, H(mean p) - mean H(p_k),
    in nats) and ``p_std`` (N: the members' std of the predicted class's probability)."""
    from astrospectra_jax.trust.ood import ensemble_mutual_information

    p = np.asarray(member_probabilities, np.float64)
    mean = p.mean(0)
    predicted = mean.argmax(-1)
    spread = np.take_along_axis(p, predicted[None, :, None], axis=-1)[..., 0].std(0)
    return {"probabilities": mean, "disagreement": ensemble_mutual_information(p),
            "p_std": spread}


def log_members(log, split: str, step: int, epoch: float, result: dict) -> None:
    """Each member's test loss and accuracy as ``<split>_member_<k>`` (TensorBoard, jsonl)."""
    for k, member in enumerate(result.get("members", ())):
        log.write(f"{split}_member_{k}", step, {"epoch": epoch, "loss": member["loss"],
                                                 "accuracy": member["accuracy"]})


def results_fields(config, final: dict, class_names) -> dict[str, Any]:
    """What results.json adds for an ensemble (nothing for one model): ``members`` (each one's
    seed, accuracy, test_loss and classification report), ``accuracy_mean`` and
    ``accuracy_std`` over them, and ``ensemble`` (the averaged probabilities' report; the
    top-level ``accuracy`` is this one's)."""
    from astrospectra_jax.training import metrics

    if "members" not in final:
        return {}
    members = []
    for seed, member in zip(seeds(config), final["members"], strict=True):
        report = metrics.classification_report(final["labels"], member["predictions"],
                                               class_names)
        members.append({"seed": seed, **report, "test_loss": member["loss"]})
    accuracies = [m["accuracy"] for m in members]
    ensemble = metrics.classification_report(final["labels"], final["predictions"], class_names)
    ensemble["test_loss"] = final["loss"]
    return {"ensemble_size": len(members), "member_axis": resolve_axis(config),
            "members": members, "accuracy_mean": float(np.mean(accuracies)),
            "accuracy_std": float(np.std(accuracies, ddof=1)), "ensemble": ensemble}
