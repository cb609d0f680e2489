"""Messages and files a user reads: metrics after a resume (one row per step), absent classes
as n/a, a skipped file named once, a split error in class names (issue #25)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from astrospectra_jax import predict
from astrospectra_jax.data import sources
from astrospectra_jax.training import metrics


def _train_rows(workdir, steps):
    log = metrics.MetricsLog(workdir, enabled=True)
    for step in steps:
        log.write("train", step, {"loss": float(step)})
    log.close()


def _event_steps(workdir) -> list[int]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [event.step for path in sorted(workdir.glob("events.out.tfevents.*"))
            for event in EventFileLoader(str(path)).Load()
            for value in event.summary.value if value.tag == "train/loss"]


def test_metrics_continue_after_a_resume_with_one_row_per_step(tmp_path):
    _train_rows(tmp_path, [5, 10, 15, 20, 25])  # interrupted after step 25, checkpoint at 10
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"split": "train", "st')  # a line cut short by a kill
    log = metrics.MetricsLog(tmp_path, enabled=True)
    log.continue_from(10)
    for step in (15, 20, 25, 30):
        log.write("train", step, {"loss": float(step)})
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]
    assert sorted(_event_steps(tmp_path)) == [5, 10, 15, 20, 25, 30]


def test_absent_classes_have_no_recall():
    report = predict.evaluation(["STAR", "STAR", "QSO"], np.array([0, 1, 2]),
                                ["STAR", "GALAXY", "QSO"])
    assert report["per_class"]["GALAXY"]["recall"] is None
    assert report["per_class"]["STAR"]["recall"] == 0.5
    assert predict._figure(None) == "n/a"


def test_a_skipped_file_is_named_once():
    skipped = sources.Skipped()
    skipped.add("unreadable", "x.fits", "x.fits: truncated file (10 bytes, HDU 1 needs 2880)")
    assert "x.fits: x.fits" not in skipped.summary(1)
    assert "x.fits: truncated file" in skipped.summary(1)


def test_split_error_names_the_classes_with_plain_counts():
    labels = np.array([0] * 5 + [1] + [2], dtype=np.int32)
    with pytest.raises(ValueError) as error:
        sources.stratified_split(labels, 0.15, 0, ("STAR", "GALAXY", "QSO"))
    assert "(per class STAR: 5, GALAXY: 1, QSO: 1)" in str(error.value)
    assert "np." not in str(error.value)
