"""Command line: a trained run applied to new spectra, images or line vectors.

Usage::

    python -m astrospectra_jax.predict --workdir RUN --input PATH [PATH ...] --out preds.csv

``RUN`` is a ``main.py`` workdir, finished (``results.json``) or still checkpointed
(``config.json``); its config names the model, the input modality (image / line) and the classes,
and the latest checkpoint in ``RUN/checkpoints`` holds the weights. Each ``PATH`` is a file or a
folder (searched recursively) of:

- FITS spectra: LAMOST (DR1, DR8, DR10 layouts) or SDSS / BOSS ``spec-*.fits``, told apart by
  content; they go through the training recipe (``data.recipe``) to a 28x28 image or a
  721-value line vector, whichever the model takes. True class: the survey's own label.
- The Kaggle layout (``{train,test}_labelsvN.csv`` beside ``{train,test}_imagesvN/``), or loose
  28x28 PNGs: image models only. True class: the CSV's label.
- Line-vector ``.npz`` files (``spectra`` (N, 721), optional ``ids`` and ``labels`` 1..3):
  line models only.

Output: ``--out`` CSV, one row per usable input: ``id, file, predicted, p_<class>...,
true_class`` (empty where unknown), ``ood_score, outside_classes`` (docs/trusting-predictions.md;
not with ``--no-flag``, nor for a run that fitted no detector). For an ensemble run
(``config.ensemble_size > 1``) the probabilities are the members' average, and two columns
follow: ``disagreement`` (the mutual information between the prediction and the members,
H(mean p) - mean H(p_k), in nats) and ``p_std`` (the members' spread of the predicted class's
probability). The CSV is written to a temporary file and renamed, so an interrupted run
leaves no half-written CSV. Where true classes among the model's classes exist, accuracy,
per-class recall and the confusion matrix are printed and written beside the CSV
(``<out>.metrics.json``, ``<out>.confusion_matrix.png``). Unusable inputs are listed with the
reason and skipped; the command fails only when none is usable.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astrospectra_jax import results
from astrospectra_jax.data import catalogue
from astrospectra_jax.data.inputs import collect_inputs

DEFAULT_BATCH_SIZE = 256


class RunError(ValueError):
    """A workdir that cannot be predicted with (no config, no checkpoint)."""


# ----------------------------------------------------------------------------- the run

@dataclasses.dataclass
class TrainedModel:
    config: object  # ml_collections.ConfigDict
    spec: catalogue.DatasetSpec
    graphdef: object
    model: dict  # {"params", "model_state"}: the checkpoint's model items, on the devices
    step: int
    calibration: object = None  # trust.calibration.Calibration of a finished run, or None
    detector: object = None  # trust.ood.OODDetector of a finished run, or None


def run_config(workdir) -> dict:
    """The config a ``main.py`` run used: from results.json, else config.json."""
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise RunError(f"{workdir}: no such run folder")
    for name in (results.RESULTS_JSON, results.CONFIG_JSON):
        path = workdir / name
        if path.is_file():
            try:
                payload = results.read_json(path)
            except ValueError as err:
                raise RunError(str(err)) from err
            config = payload.get("config") if name == results.RESULTS_JSON else payload
            if not isinstance(config, dict) or "model" not in config or "dataset" not in config:
                raise RunError(f"{path}: holds no main.py config (model, dataset)")
            return config
    raise RunError(f"{workdir}: neither results.json nor config.json: not a main.py workdir "
                   "(deep-learning runs write config.json when they start)")


def load_run(workdir) -> TrainedModel:
    """The model of a run with the weights of its latest checkpoint, on the devices."""
    import ml_collections

    from astrospectra_jax.training import checkpointing, ensemble, state

    workdir = Path(workdir)
    config = ml_collections.ConfigDict(run_config(workdir))
    if config.get("kind", "deep") != "deep":
        raise RunError(f"{workdir}: a {config.kind} run; predict needs a deep-learning run")
    spec = catalogue.info(config.dataset)
    checkpoints = workdir / results.CHECKPOINTS_DIR
    if not checkpoints.is_dir():
        raise RunError(f"{checkpoints}: no checkpoints folder; train the run first")
    if config.get("ensemble_axis") == "mesh":  # here: on devices where they fit, else mapped
        config.ensemble_axis = "auto"
    mesh = ensemble.make_mesh(config)
    graphdef, model = state.init_model(config, spec, mesh)  # the layout to restore into
    manager = checkpointing.open_manager(checkpoints, config.keep_checkpoints, read_only=True)
    try:
        model, step = checkpointing.restore_latest(manager, model, read_only=True)
    finally:
        manager.close()
    if step is None:
        raise RunError(f"{checkpoints}: no complete checkpoint yet")
    from astrospectra_jax.trust.fit import load_trust

    finished = workdir / results.RESULTS_JSON
    trust = load_trust(workdir, results.read_json(finished) if finished.is_file() else None)
    return TrainedModel(config, spec, graphdef, model, step, *trust)


# ----------------------------------------------------------------------------- prediction

def predict_trusted(run: TrainedModel, features: np.ndarray,
                    batch_size: int = DEFAULT_BATCH_SIZE
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None,
                               np.ndarray | None]:
    """(class probabilities (N, classes) at the run's fitted temperature, ood_score (N,),
    outside_classes (N,), an ensemble's member probabilities (K, N, classes)); the middle two
    None where the run fitted no detector, the last for one model."""
    from astrospectra_jax.training import ensemble, trust_fit
    from astrospectra_jax.trust import calibration as cal
    from astrospectra_jax.trust.fit import apply_trust

    logits, model_features, members = trust_fit.model_outputs(
        run.graphdef, run.model, run.config, run.spec, features, batch_size,
        ensemble.make_mesh(run.config))
    k = run.spec.num_classes
    probs, scores, outside = apply_trust(logits[:, :k], model_features, run.calibration,
                                         run.detector, ood_logits=logits)
    if members is not None:  # each member's class probabilities at the run's temperature
        temperature = run.calibration.temperature if run.calibration else 1.0
        members = cal.softmax(np.log(np.clip(members[..., :k], 1e-30, None)), temperature)
    return probs.astype(np.float32), scores, outside, members


def predict_probabilities(run: TrainedModel, features: np.ndarray,
                          batch_size: int = DEFAULT_BATCH_SIZE,
                          *, progress: bool = True) -> np.ndarray:
    """Class probabilities (N, classes) at the run's fitted temperature, in batches sharded
    over every device; an ensemble's members' (K, N, classes)."""
    del progress
    probabilities, _, _, members = predict_trusted(run, features, batch_size)
    return probabilities if members is None else members


def evaluation(true_classes: Sequence[str | None], predicted: np.ndarray,
               class_names: Sequence[str]) -> dict | None:
    """Accuracy, per-class figures and confusion matrix over the inputs whose true class is one
    of ``class_names``; None when there is none. Other true classes are counted apart."""
    from astrospectra_jax.training import metrics

    known = [i for i, c in enumerate(true_classes) if c in class_names]
    outside = collections.Counter(c for c in true_classes if c is not None and c not in class_names)
    if not known:
        return None
    labels = np.array([class_names.index(true_classes[i]) for i in known])
    report = metrics.classification_report(labels, predicted[known], class_names)
    for figures in report["per_class"].values():
        if not figures["support"]:  # no input of that class: recall says nothing (JSON null)
            figures["recall"] = None
    report.update({"examples": len(known),
                   "unlabelled": sum(c is None for c in true_classes),
                   "other_classes": dict(sorted(outside.items()))})
    return report


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"  # n/a: no input of that class


def _sibling(out: Path, suffix: str) -> Path:
    stem = out.name[:-4] if out.name.lower().endswith(".csv") else out.name
    return out.with_name(stem + suffix)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m astrospectra_jax.predict",
        description="Classify spectra (LAMOST / SDSS FITS), images (Kaggle layout, PNGs) or line "
                    "vectors (.npz) with a trained main.py run.")
    parser.add_argument("--workdir", required=True, type=Path,
                        help="a main.py workdir with checkpoints (finished or not)")
    parser.add_argument("--input", required=True, nargs="+", type=Path,
                        help="files or folders (searched recursively)")
    parser.add_argument("--out", required=True, type=Path, help="CSV of predictions")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help="examples per device call (rounded up to the devices)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--no-flag", action="store_true",
                        help="no ood_score / outside_classes columns (inputs outside the "
                             "model's classes are not flagged)")
    return parser


def flagged_by_class(true_classes: Sequence[str | None], outside: np.ndarray) -> dict:
    """{true class (or "unknown"): [flagged, inputs]} in order of first appearance."""
    counts: dict = {}
    for true, out in zip(true_classes, outside, strict=True):
        entry = counts.setdefault(true or "unknown", [0, 0])
        entry[0] += int(out)
        entry[1] += 1
    return counts


def _flag_summary(run: TrainedModel, true_classes, outside) -> dict:
    counts = flagged_by_class(true_classes, outside)
    d = run.detector
    print(f"outside the classes ({d.method}, threshold {d.threshold:.4g}, keeps "
          f"{d.kept:.0%} of the validation part): {int(np.sum(outside))} of {len(outside)} "
          "flagged; by true class: " + ", ".join(f"{c} {f}/{n}" for c, (f, n) in counts.items()))
    return {"method": d.method, "threshold": d.threshold, "flagged": int(np.sum(outside)),
            "flagged_by_true_class": counts}


def main(argv: Sequence[str] | None = None) -> int:
    from astrospectra_jax import logs

    logs.setup()
    parser = _parser()
    args = parser.parse_args(argv)
    progress = not args.no_progress
    if args.batch_size < 1:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    try:
        run = load_run(args.workdir)
    except (RunError, ValueError, OSError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    spec, names = run.spec, list(run.spec.class_names)
    print(f"{args.workdir}: {run.config.model.name} on {spec.name}"
          f"{' (SYNTHETIC)' if spec.synthetic else ''}, checkpoint step {run.step}; "
          f"{spec.modality} input, classes {', '.join(names)}", file=sys.stderr)
    inputs = collect_inputs(args.input, spec.modality, spec.task or "", progress=progress)
    for what, count in inputs.ignored.items():
        if count:
            print(f"ignored {count} {what}", file=sys.stderr)
    if inputs.skipped:
        print(f"skipped {len(inputs.skipped)} input(s):", file=sys.stderr)
        for file, reason in inputs.skipped:
            print(f"  {file}: {reason}", file=sys.stderr)
    if not inputs.ids:
        parser.exit(2, f"{parser.prog}: error: no usable input among "
                       f"{' '.join(map(str, args.input))}\n")

    probabilities, scores, outside, members = predict_trusted(
        run, np.stack(inputs.features), args.batch_size)
    flag = outside is not None and not args.no_flag
    if outside is None and not args.no_flag:
        print("no ood_score / outside_classes: the run fitted no OOD detector (unfinished, or "
              "config.validation_fraction=0)", file=sys.stderr)
    predicted = probabilities.argmax(axis=1)
    header = ["id", "file", "predicted", *(f"p_{c}" for c in names), "true_class",
              *(["ood_score", "outside_classes"] if flag else [])]
    extra = np.zeros((len(probabilities), 0))
    if members is not None:  # an ensemble: how its members differ
        from astrospectra_jax.training import ensemble

        spread = ensemble.uncertainty(members)
        extra = np.stack([spread["disagreement"], spread["p_std"]], axis=1)
        header += ["disagreement", "p_std"]
    rows = ([id_, file, names[p], *(f"{q:.6f}" for q in probs), true or "",
             *([f"{scores[i]:.6g}", int(outside[i])] if flag else []),
             *(f"{v:.6f}" for v in extra[i])]
            for i, (id_, file, p, probs, true) in enumerate(zip(
                inputs.ids, inputs.files, predicted, probabilities, inputs.true_classes)))
    with results.atomic_open(args.out) as f:  # an interrupted run leaves no half-written CSV
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    counts = collections.Counter(names[p] for p in predicted)
    print(f"wrote {args.out}: {len(inputs.ids)} predictions ("
          + ", ".join(f"{c} {counts[c]}" for c in names) + ")")
    flags = _flag_summary(run, inputs.true_classes, outside) if flag else None

    report = evaluation(inputs.true_classes, predicted, names)
    if report is not None:
        report["outside_classes"] = flags
        report["temperature"] = run.calibration.temperature if run.calibration else None
        from astrospectra_jax.training import metrics

        report.update({"run": str(args.workdir), "model": run.config.model.name,
                       "trained_on": spec.name, "trained_on_synthetic": bool(spec.synthetic),
                       "checkpoint_step": run.step, "inputs": [str(p) for p in args.input],
                       "skipped": len(inputs.skipped)})
        results.write_json(_sibling(args.out, ".metrics.json"), report)
        metrics.plot_confusion_matrix(
            _sibling(args.out, ".confusion_matrix.png"), report["confusion_matrix"], names,
            title=f"{run.config.model.name} trained on {spec.name}"
                  f"{' (SYNTHETIC)' if spec.synthetic else ''}\n{report['examples']} inputs: "
                  f"accuracy {report['accuracy']:.3f}")
        recall = ", ".join(f"{c} {_figure(report['per_class'][c]['recall'])}" for c in names)
        print(f"accuracy {report['accuracy']:.3f} on {report['examples']} labelled inputs; "
              f"recall {recall}")
        print("confusion matrix (rows: true " + "/".join(names) + "): "
              + str(report["confusion_matrix"]))
        if report["other_classes"]:
            print("not scored (true class outside the model's classes): " + ", ".join(
                f"{c}: {n}" for c, n in report["other_classes"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
