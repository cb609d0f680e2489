"""The one atomic write: the mode a plain open would give, and nothing half-written."""

from __future__ import annotations

import json
import os
import stat

import pytest

from astrospectra_jax import results


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        results.write_json(tmp_path / "new" / results.RESULTS_JSON, {"accuracy": 0.5})
        with results.atomic_open(tmp_path / "figure.png", "wb") as f:
            f.write(b"\x89PNG")
    finally:
        os.umask(previous)
    for path in (tmp_path / "new" / results.RESULTS_JSON, tmp_path / "figure.png"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert json.loads((tmp_path / "new" / results.RESULTS_JSON).read_text()) == {"accuracy": 0.5}


def test_an_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / results.SUITE_RECORD
    results.write_json(path, {"status": "running"})
    circular = {"status": "ok"}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular"):
        results.write_json(path, circular)
    with pytest.raises(KeyboardInterrupt):
        with results.atomic_open(path) as f:
            f.write('{"status": "o')
            raise KeyboardInterrupt
    assert results.read_json(path) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == [results.SUITE_RECORD]


def test_reading_names_the_file_and_the_missing_fields(tmp_path):
    path = tmp_path / results.RESULTS_JSON
    results.write_json(path, {"dataset": "astrospectra_mnist/v2", "model": "lenet"})
    with pytest.raises(ValueError, match=rf"{path}: missing field\(s\) accuracy"):
        results.read_deep_results(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match=f"{path}: not JSON"):
        results.read_json(path)
    lines = tmp_path / results.METRICS_JSONL
    lines.write_text('{"split": "train", "step": 2, "loss": 1.0}\n{"split": "te')
    assert results.read_metrics(lines) == [{"split": "train", "step": 2, "loss": 1.0}]
