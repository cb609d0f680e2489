"""Predictions a survey can trust, at the end of training (docs/trusting-predictions.md).

``config.validation_fraction`` of every training class is held out (``trust.fit.holdout``,
seeded by ``config.seed``): the same rows in both pipelines (device: by index; tf.data: the
same indices, filtered out of the stream). After training, the temperature is fitted on it
(ECE before/after on the test split, ``reliability.png``) and the out-of-class detector's
threshold is set to keep 95% of it (``ood.npz``); results.json gets ``calibration`` and
``ood``. ``config.outlier_exposure.fraction`` > 0 adds simulated A/M stars, galaxies and
quasars (``trust.outliers``) to the training part as an extra class K ("other"), so the model
has K+1 outputs; its probability is then the OOD score (``config.ood_method`` "auto"), else
the Mahalanobis distance of ``model.features``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx

from astrospectra_jax.training import ensemble, input_pipeline, sharding
from astrospectra_jax.training.configuration import choice, require
from astrospectra_jax.trust import calibration as cal
from astrospectra_jax.trust import fit as trust

OOD_METHODS = ("auto", "mahalanobis", "outlier_exposure", "max_softmax", "energy")
RELIABILITY_PNG = "reliability.png"
OOD_NPZ = "ood.npz"
_OUTLIER_STREAM = 0x0E


def outlier_fraction(config) -> float:
    oe = config.get("outlier_exposure")
    return float(oe.get("fraction", 0.0)) if oe is not None else 0.0


def extra_outputs(config) -> int:
    """1 (the "other" class) when the run trains with outlier exposure, else 0."""
    return 1 if outlier_fraction(config) > 0 else 0


def method(config) -> str:
    """The OOD method a run uses: ``config.ood_method``, "auto" resolved."""
    name = choice("ood_method", config.get("ood_method", "auto"), OOD_METHODS)
    if name == "auto":
        return "outlier_exposure" if extra_outputs(config) else "mahalanobis"
    return name


def check(config, spec) -> None:
    """ConfigError for trust fields that do not fit together or the dataset."""
    fraction = config.get("validation_fraction", 0.0)
    require(0.0 <= fraction < 1.0, "validation_fraction", fraction, "must lie in [0, 1)")
    oe = outlier_fraction(config)
    require(oe >= 0, "outlier_exposure.fraction", oe, "must be >= 0")
    if oe:
        require(spec.task == "v2", "outlier_exposure.fraction", oe,
                "needs a v2 (F/G/K) dataset: its outliers are A/M stars, galaxies, quasars")
        require(config.input_pipeline == "device", "outlier_exposure.fraction", oe,
                "trains through the 'device' pipeline only (config.input_pipeline)")
    require(method(config) != "outlier_exposure" or oe > 0, "ood_method", config.ood_method,
            "needs config.outlier_exposure.fraction > 0")


def simulated_other(config, spec, num_train: int) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels K) of ``outlier_exposure.fraction * num_train`` simulated outliers in
    the dataset's stored form, seeded by ``config.seed``."""
    from astrospectra_jax.data import recipe
    from astrospectra_jax.trust.outliers import simulated_outliers

    n = int(round(outlier_fraction(config) * num_train))
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, _OUTLIER_STREAM]))
    flux = simulated_outliers(n, rng).flux
    features = (recipe.image(flux)[..., None] if spec.modality == "image"
                else recipe.line_vector(flux))
    return features, np.full(n, spec.num_classes, np.int32)


# ----------------------------------------------------------------------------- the hold-out

@dataclasses.dataclass
class HeldOut:
    """The validation part (an EvalSplit) and the in-class training part whose features fit
    Mahalanobis (built on demand); ``validation`` None with ``reason`` when nothing is held."""

    validation: Any = None
    training_part: Callable[[], Any] | None = None
    reason: str = ""


def _no_validation(config) -> HeldOut:
    return HeldOut(reason=f"config.validation_fraction={config.get('validation_fraction', 0)}: "
                          "no validation part to fit the temperature and OOD threshold on")


def split_resident(config, spec, features, labels, mesh
                   ) -> tuple[np.ndarray, np.ndarray, HeldOut]:
    """(training features, labels (outliers added), HeldOut) of the device pipeline."""
    from astrospectra_jax.training.inputs import ResidentEvalSplit

    fraction = config.get("validation_fraction", 0.0)
    train_idx, val_idx = trust.holdout(labels, fraction, config.seed)
    held = _no_validation(config)
    if len(val_idx):
        held = HeldOut(ResidentEvalSplit(features[val_idx], labels[val_idx], mesh,
                                         config.batch_size),
                       lambda: ResidentEvalSplit(features[train_idx], labels[train_idx], mesh,
                                                 config.batch_size))
    train = features[train_idx], labels[train_idx].astype(np.int32)
    if extra_outputs(config):
        other = simulated_other(config, spec, len(train_idx))
        train = tuple(np.concatenate(pair) for pair in zip(train, other, strict=True))
    return *train, held


def split_streamed(config, feature_key: str, mesh) -> tuple[np.ndarray | None, int, HeldOut]:
    """(rows that train or None for all, training examples, HeldOut) of the tf.data pipeline:
    the labels are read once to draw the hold-out; the validation part is read into memory."""
    from astrospectra_jax.training.inputs import ResidentEvalSplit, StreamedEvalSplit

    fraction = config.get("validation_fraction", 0.0)
    if not fraction:
        return None, input_pipeline.tfdata_num_train(config.dataset, config.data_dir), \
            _no_validation(config)
    read = lambda keep: list(input_pipeline.tfdata_eval_batches(  # noqa: E731
        config.dataset, data_dir=config.data_dir, feature_key=feature_key,
        batch_size=config.batch_size, split="train", keep=keep))
    labels = np.concatenate([b[1][b[2]] for b in read(None)])
    train_idx, val_idx = trust.holdout(labels, fraction, config.seed)
    keep = np.zeros(len(labels), bool)
    keep[train_idx] = True
    batches = read(~keep)
    val = [np.concatenate([b[i][b[2]] for b in batches]) for i in (0, 1)]
    num_train = (input_pipeline.tfdata_kept_per_process(keep, jax.process_count())
                 * jax.process_count())
    return keep, num_train, HeldOut(
        ResidentEvalSplit(*val, mesh, config.batch_size),
        lambda: StreamedEvalSplit(config, feature_key, labels[keep], mesh, "train", keep))


# ----------------------------------------------------------------------------- model outputs

def outputs_batch(graphdef, batch_size: int, prep: dict, mesh) -> Callable:
    """Jitted ``(model items, features, labels, mask, index) -> (logits, features)`` of batch
    ``index`` (an EvalSplit's ``outputs`` calls it as it calls the evaluation step)."""
    on_batch = sharding.batch_sharded(mesh)

    def batch_outputs(model, features, labels, mask, index):
        del labels, mask
        features = jax.lax.dynamic_slice_in_dim(features, index * batch_size, batch_size)
        x = input_pipeline.preprocess(jax.lax.with_sharding_constraint(features, on_batch),
                                      **prep)
        module = nnx.merge(graphdef, model["params"], model["model_state"], copy=True)
        module.eval()
        f = module.features(x)
        return module.classify(f), f.astype(jnp.float32)

    return jax.jit(batch_outputs, out_shardings=sharding.replicated(mesh))


def collect(split, fn: Callable, model) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N, outputs), features (N, D)) of every example of an EvalSplit."""
    n = len(split.labels)
    logits, features = zip(*jax.device_get(split.outputs(fn, model)), strict=True)
    return np.concatenate(logits)[:n], np.concatenate(features)[:n]


def _member_items(model, config, mesh) -> list:
    """An ensemble's members' model items, each replicated over ``mesh``; ``[model]`` else."""
    if ensemble.size(config) == 1:
        return [model]
    on_all = sharding.replicated(mesh)
    return [jax.tree.map(lambda x: jax.device_put(x[k], on_all), model)  # noqa: B023
            for k in range(ensemble.size(config))]


def outputs(split, fn: Callable, model, config, mesh
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(logits, features, member probabilities) of an EvalSplit. An ensemble's logits are the
    log of its members' averaged probabilities, its features the members' side by side, and
    its members' probabilities (K, N, outputs) come third (None for one model)."""
    per_member = [collect(split, fn, items) for items in _member_items(model, config, mesh)]
    if len(per_member) == 1:
        return (*per_member[0], None)
    probs = np.stack([cal.softmax(logits) for logits, _ in per_member])
    return (np.log(np.clip(probs.mean(0), 1e-30, None)),
            np.concatenate([f for _, f in per_member], axis=1), probs)


def model_outputs(graphdef, model, config, spec, features: np.ndarray, batch_size: int,
                  mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(logits, features, member probabilities) of stored-form ``features`` (predict,
    explain); see ``outputs``."""
    from astrospectra_jax.training.inputs import ResidentEvalSplit

    devices = jax.device_count()
    batch_size = min(-(-batch_size // devices), -(-len(features) // devices)) * devices
    prep = dict(modality=spec.modality, input_size=config.model.input_size)
    split = ResidentEvalSplit(features, np.zeros(len(features), np.int32), mesh, batch_size)
    return outputs(split, outputs_batch(graphdef, batch_size, prep, mesh), model, config,
                   mesh)


# ----------------------------------------------------------------------------- the fit

def fit(config, spec, graphdef, mesh, model, held: HeldOut, test_split, workdir: Path, *,
        lead: bool) -> dict[str, Any]:
    """results.json's ``calibration`` and ``ood`` (None, with the reason, when nothing was
    held out); writes reliability.png and ood.npz (lead process)."""
    if held.validation is None:
        logging.warning("calibration and OOD threshold skipped: %s", held.reason)
        return {"calibration": None, "ood": None, "trust_skipped": held.reason}
    prep = dict(modality=spec.modality, input_size=config.model.input_size)
    fn = outputs_batch(graphdef, config.batch_size, prep, mesh)
    k, name = spec.num_classes, method(config)
    val_logits, val_features, _ = outputs(held.validation, fn, model, config, mesh)
    test_logits, test_features, _ = outputs(test_split, fn, model, config, mesh)
    train_features = train_labels = None
    if name == "mahalanobis":
        part = held.training_part()
        train_features, train_labels = outputs(part, fn, model, config, mesh)[1], part.labels
    record = trust.fit_trust(
        val_logits=val_logits[:, :k], val_labels=held.validation.labels,
        test_logits=test_logits[:, :k], test_labels=test_split.labels, method=name,
        train_features=train_features, train_labels=train_labels, val_features=val_features,
        num_classes=k, val_ood_logits=val_logits if name == "outlier_exposure" else None)
    _, test_scores, test_out = trust.apply_trust(test_logits[:, :k], test_features,
                                                 record.calibration, record.detector,
                                                 ood_logits=test_logits)
    out = record.to_json()
    out["calibration"]["validation_examples"] = len(held.validation.labels)
    out["ood"].update(chosen=config.get("ood_method", "auto"),
                      test_flagged=float(np.mean(test_out)), file=OOD_NPZ)
    if lead:
        record.detector.save_npz(Path(workdir) / OOD_NPZ)
        cal.plot_reliability(Path(workdir) / RELIABILITY_PNG, cal.softmax(test_logits[:, :k]),
                             cal.softmax(test_logits[:, :k], record.calibration.temperature),
                             test_split.labels, title=f"{config.model.name} on {config.dataset}"
                             f" (test, T={record.calibration.temperature:.3f})")
    c = record.calibration
    logging.info("calibration: T %.3f, test ECE %.4f -> %.4f; OOD %s threshold %.4g flags "
                 "%.1f%% of the test split", c.temperature, c.ece_before, c.ece_after, name,
                 record.detector.threshold, 100 * float(np.mean(test_out)))
    del test_scores
    return out
