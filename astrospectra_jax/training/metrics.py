"""What a run writes: TensorBoard scalars, metrics.jsonl, the classification report in
results.json, confusion_matrix.png (names and the atomic write: ``astrospectra_jax.results``)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from absl import logging
from sklearn import metrics as skmetrics

from astrospectra_jax import results


def _scalar_writer(workdir: str | Path, enabled: bool):
    """clu's default writer (TensorBoard through TensorFlow, plus the log) where clu and
    TensorFlow import; else TensorBoard's own event writer, which needs no TensorFlow (a bare
    accelerator image); else None (metrics.jsonl and the log remain)."""
    try:
        from clu import metric_writers
    except ImportError:
        pass
    else:
        return metric_writers.create_default_writer(str(workdir), just_logging=not enabled)
    if not enabled:
        return None
    try:
        from tensorboard.summary import Writer
    except ImportError:
        logging.warning("neither clu nor tensorboard is installed: no TensorBoard events, "
                        "metrics go to metrics.jsonl only")
        return None
    return _TensorBoardWriter(Writer(str(workdir)))


class _TensorBoardWriter:
    """The part of clu's MetricWriter interface MetricsLog uses, on tensorboard.summary.Writer."""

    def __init__(self, writer):
        self._writer = writer

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, float(value), step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class MetricsLog:
    """Scalars to TensorBoard (clu, or tensorboard's writer without TensorFlow) and, one JSON
    object per line, to ``metrics.jsonl``.

    Only the writing process (``enabled``) touches files; resumed runs append.
    """

    def __init__(self, workdir: str | Path, *, enabled: bool):
        self.enabled = enabled
        self.writer = _scalar_writer(workdir, enabled)
        self._jsonl = open(Path(workdir) / results.METRICS_JSONL, "a") if enabled else None

    def write(self, split: str, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            self.writer.write_scalars(step, {f"{split}/{k}": v for k, v in values.items()})
        if self._jsonl is not None:
            record = {"split": split, "step": step, "time": time.time(), **values}
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
        if self._jsonl is not None:
            self._jsonl.close()


def classification_report(labels: np.ndarray, predictions: np.ndarray,
                          class_names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support and the confusion matrix (rows: true)."""
    classes = list(range(len(class_names)))
    precision, recall, f1, support = skmetrics.precision_recall_fscore_support(
        labels, predictions, labels=classes, zero_division=0)
    return {
        "accuracy": float(skmetrics.accuracy_score(labels, predictions)),
        "class_names": list(class_names),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])}
                      for i, name in enumerate(class_names)},
        "macro_f1": float(np.mean(f1)),
        "confusion_matrix": skmetrics.confusion_matrix(labels, predictions,
                                                       labels=classes).tolist(),
    }


def plot_confusion_matrix(path: str | Path, matrix: Sequence[Sequence[int]],
                          class_names: Sequence[str], title: str) -> None:
    """The confusion matrix as a PNG (true class on rows, predicted on columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4.4), dpi=120)
    display = skmetrics.ConfusionMatrixDisplay(np.asarray(matrix), display_labels=class_names)
    display.plot(ax=ax, cmap="Blues", colorbar=False, values_format="d")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        with results.atomic_open(path, "wb") as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
