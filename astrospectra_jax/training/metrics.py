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


_EVENTS_GLOB = "events.out.tfevents.*"


def _truncate_jsonl(path: Path, step: int) -> None:
    if not path.is_file():
        return
    kept, dropped = [], False
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
            keep = int(row["step"]) <= step
        except (ValueError, KeyError, TypeError):  # a line cut short by a kill
            keep = False
        if keep:
            kept.append(line)
        dropped = dropped or not keep
    if dropped:
        with results.atomic_open(path) as f:
            f.write("".join(line + "\n" for line in kept))


def _truncate_events(path: Path, step: int) -> None:
    """An event file of an earlier (interrupted) run without its events past ``step``
    (TensorBoard's own readers keep every copy of a step written twice)."""
    try:
        from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError:
        return
    records = list(RawEventFileLoader(str(path)).Load())
    kept = [r for r in records if event_pb2.Event.FromString(r).step <= step]
    if len(kept) == len(records):
        return
    with results.atomic_open(path, "wb") as f:
        writer = RecordWriter(f)
        for record in kept:
            writer.write(record)
        writer.flush()


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

    Only the writing process (``enabled``) touches files; a resumed run calls
    ``continue_from(step)``, which drops what an interrupted run wrote past its checkpoint, so
    both files keep one row per step and split.
    """

    def __init__(self, workdir: str | Path, *, enabled: bool):
        self.enabled = enabled
        self._path = Path(workdir) / results.METRICS_JSONL
        self._earlier_events = sorted(Path(workdir).glob(_EVENTS_GLOB)) if enabled else []
        self.writer = _scalar_writer(workdir, enabled)
        self._jsonl = open(self._path, "a") if enabled else None

    def continue_from(self, step: int) -> None:
        """Rows and TensorBoard events after ``step`` (the restored checkpoint's) are dropped:
        the run writes them again."""
        if self._jsonl is None:
            return
        self._jsonl.close()
        _truncate_jsonl(self._path, step)
        self._jsonl = open(self._path, "a")
        for events in self._earlier_events:
            _truncate_events(events, step)

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
