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
true_class`` (empty where unknown); for an ensemble run (``config.ensemble_size > 1``) the
probabilities are the members' average, and two columns follow: ``disagreement`` (the mutual
information between the prediction and the members, H(mean p) - mean H(p_k), in nats) and
``p_std`` (the members' spread of the predicted class's probability). The CSV is written to
a temporary file and renamed, so an interrupted run leaves no half-written CSV. Where true
classes among the model's classes exist, accuracy,
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
from tqdm.auto import tqdm

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
    return TrainedModel(config, spec, graphdef, model, step)


# ----------------------------------------------------------------------------- prediction

def predict_probabilities(run: TrainedModel, features: np.ndarray,
                          batch_size: int = DEFAULT_BATCH_SIZE,
                          *, progress: bool = True) -> np.ndarray:
    """Class probabilities (N, classes), in batches sharded over every device; an ensemble's
    members' (K, N, classes)."""
    import jax
    from flax import nnx

    from astrospectra_jax.training import ensemble, input_pipeline, sharding

    mesh = ensemble.make_mesh(run.config)
    members = ensemble.Members.of(run.config, mesh)
    devices = jax.device_count()
    batch_size = -(-batch_size // devices) * devices  # whole rows per device
    batch_size = min(batch_size, -(-len(features) // devices) * devices)
    prep = dict(modality=run.spec.modality, input_size=run.config.model.input_size)

    def forward(items, x):
        model = nnx.merge(run.graphdef, items["params"], items["model_state"], copy=True)
        model.eval()
        return jax.nn.softmax(model(x).astype("float32"))

    @jax.jit
    def probabilities(params, model_state, batch):
        x = input_pipeline.preprocess(batch, **prep)
        items = {"params": params, "model_state": model_state}
        return members.lift(forward)(items, x) if members.size > 1 else forward(items, x)

    out = []
    padded, _, _ = input_pipeline.pad_to_batches(features, np.zeros(len(features), np.int32),
                                                 batch_size)
    starts = range(0, len(features), batch_size)
    for start in tqdm(starts, desc="predicting", unit="batch", disable=not progress):
        out.append(probabilities(run.model["params"], run.model["model_state"],
                                 sharding.global_batch(padded[start:start + batch_size], mesh)))
    out = np.concatenate([np.asarray(jax.device_get(p)) for p in out], axis=-2)
    return out[..., :len(features), :]


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
    return parser


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

    probabilities = predict_probabilities(run, np.stack(inputs.features), args.batch_size,
                                          progress=progress)
    header = ["id", "file", "predicted", *(f"p_{c}" for c in names), "true_class"]
    extra = np.zeros((len(probabilities), 0))
    if probabilities.ndim == 3:  # an ensemble: the averaged probabilities, and how members differ
        from astrospectra_jax.training import ensemble

        spread = ensemble.uncertainty(probabilities)
        probabilities = spread["probabilities"]
        extra = np.stack([spread["disagreement"], spread["p_std"]], axis=1)
        header += ["disagreement", "p_std"]
    predicted = probabilities.argmax(axis=1)
    rows = ([id_, file, names[p], *(f"{q:.6f}" for q in probs), true or "",
             *(f"{v:.6f}" for v in more)]
            for id_, file, p, probs, true, more in zip(inputs.ids, inputs.files, predicted,
                                                       probabilities, inputs.true_classes, extra))
    with results.atomic_open(args.out) as f:  # an interrupted run leaves no half-written CSV
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    counts = collections.Counter(names[p] for p in predicted)
    print(f"wrote {args.out}: {len(inputs.ids)} predictions ("
          + ", ".join(f"{c} {counts[c]}" for c in names) + ")")

    report = evaluation(inputs.true_classes, predicted, names)
    if report is not None:
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
