"""Evaluation: the test split, and the final model on ``config.eval_datasets``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging

from astrospectra_jax.data import catalogue
from astrospectra_jax.training import inputs, metrics
from astrospectra_jax.training.configuration import eval_dataset_names


def evaluate(split: inputs.EvalSplit, eval_batch, state) -> dict[str, Any]:
    """Loss, accuracy and predictions over the whole split (padding masked).

    One call per batch: evaluation is rare, and a loop inside the compiled function would be
    slow on CPU (see steps.scan_steps). Results stay on device until the end.
    """
    labels = split.labels
    n = len(labels)
    columns = list(zip(*jax.device_get(split.outputs(eval_batch, state)), strict=True))
    loss_sums, corrects, predictions = columns[:3]
    result = {"loss": float(np.sum(loss_sums)) / n, "accuracy": float(np.sum(corrects)) / n,
              "predictions": np.concatenate(predictions)[:n], "labels": labels}
    if len(columns) > 3:  # an ensemble: the above of the averaged probabilities, and each member
        member_loss, member_correct, member_predictions = columns[3:]
        losses, correct = np.sum(member_loss, axis=0) / n, np.sum(member_correct, axis=0) / n
        member_predictions = np.concatenate(member_predictions, axis=1)[:, :n]
        result["members"] = [{"loss": float(loss), "accuracy": float(accuracy),
                              "predictions": member_predictions[k]}
                             for k, (loss, accuracy) in enumerate(zip(losses, correct))]
    return result


def _other_dataset(name: str, config, spec) -> tuple[np.ndarray, np.ndarray, bool, str] | str:
    """(features, labels, synthetic, split) of one of ``config.eval_datasets``, or why not.

    A registered dataset contributes its test split; a folder, every labelled input under it
    (converted layout or FITS files, read by ``data.inputs`` as ``predict`` reads them; a folder
    counts as synthetic when every id is one the simulator gave).
    """
    from astrospectra_jax.data import inputs as data_inputs

    if name in catalogue.KNOWN_DATASETS:
        features, labels = catalogue.load_arrays(name, "test", data_dir=config.data_dir)
        return features, labels, catalogue.info(name).synthetic, "test"
    found = data_inputs.collect_inputs([name], spec.modality, spec.task or "", progress=False)
    keep = [i for i, c in enumerate(found.true_classes) if c in spec.class_names]
    if not keep:
        return (f"no usable {spec.modality} input of classes {', '.join(spec.class_names)} "
                f"({len(found.skipped)} skipped)")
    features = np.stack([found.features[i] for i in keep])
    labels = np.array([spec.class_names.index(found.true_classes[i]) for i in keep])
    return features, labels, all(found.ids[i].startswith("synthetic_") for i in keep), "all"


def evaluate_other_datasets(config, spec, mesh, eval_batch, state, workdir: Path, *,
                            lead: bool) -> dict[str, dict[str, Any]]:
    """The final model on each of ``config.eval_datasets``: a section per dataset (a confusion
    matrix figure each, written by the lead process)."""
    sections = {}
    for name in eval_dataset_names(config):
        found = _other_dataset(name, config, spec)
        if isinstance(found, str):  # recorded, not raised: the trained model's results count
            logging.warning("config.eval_datasets: %s: %s", name, found)
            sections[name] = {"error": found}
            continue
        features, labels, synthetic, split = found
        result = evaluate(inputs.ResidentEvalSplit(features, labels, mesh, config.batch_size),
                          eval_batch, state)
        section = metrics.classification_report(result["labels"], result["predictions"],
                                                spec.class_names)
        section.update({"synthetic": bool(synthetic), "split": split, "examples": len(labels),
                        "loss": result["loss"]})
        sections[name] = section
        logging.info("Accuracy %.4f on %d examples of %s%s (eval_datasets)", section["accuracy"],
                     len(labels), name, " (SYNTHETIC)" if synthetic else "")
        if lead:
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
            metrics.plot_confusion_matrix(
                workdir / f"confusion_matrix_{slug}.png", section["confusion_matrix"],
                spec.class_names,
                title=f"{config.model.name} trained on {config.dataset}\nevaluated on {name}"
                      f"{' (SYNTHETIC)' if synthetic else ''}: accuracy {section['accuracy']:.3f}")
    return sections
