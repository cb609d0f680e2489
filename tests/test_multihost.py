"""The multi-process path on CPU: 2 processes (``jax.distributed`` with a localhost coordinator,
gloo collectives, one CPU device each) against 1 process with 2 CPU devices, same global batch.

Checked: the same final parameters (to float32 rounding, ``rtol=1e-5, atol=1e-6``: the
reductions run in the same order, only the transport differs) and the same test accuracy;
only process 0 writes metrics and results; a 2-process run preempted midway (SIGTERM to one
process: JAX's preemption sync picks the step where both stop and save one Orbax checkpoint
together) resumes from that checkpoint in a fresh 2-process run; the tf.data pipeline gives each process its own rows of
each global batch.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "multihost_worker.py"
TIMEOUT_S = 240
EPOCHS = "2"  # 12 steps: room after the SIGTERM (step 2) for the sync point, a few steps on


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(mode: str, out: Path, num_processes: int, *extra: str) -> list[str]:
    """Run the worker as ``num_processes`` processes; returns each one's stderr."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": os.environ.get("XLA_FLAGS", "").replace(
               "--xla_force_host_platform_device_count", "--ignored_device_count")}
    coordinator = f"127.0.0.1:{_free_port()}"
    cpu_devices = "2" if num_processes == 1 else "1"
    procs = [subprocess.Popen(
        [sys.executable, str(WORKER), mode, str(out), "--coordinator", coordinator,
         "--num-processes", str(num_processes), "--process-id", str(i),
         "--cpu-devices", cpu_devices, *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(num_processes)]
    logs = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=TIMEOUT_S)
            logs.append(err)
            assert proc.returncode == 0, err[-4000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    return logs


def _state(out: Path) -> list[np.ndarray]:
    with np.load(out / "state.npz") as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def test_two_processes_match_one_and_resume_after_preemption(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    _run("train", single, 1, "--epochs", EPOCHS)
    first = _run("train", multi, 2, "--epochs", EPOCHS, "--preempt-at", "2")
    summary = json.loads((multi / "results.json").read_text())
    stopped = [json.loads((multi / f"stopped_{i}.json").read_text()) for i in (0, 1)]
    assert stopped[0] == stopped[1] == summary["step"], (stopped, summary)  # one step for both
    step = summary["step"]
    assert 2 < step < 12 and summary == {"preempted": True, "step": step, "processes": 2,
                                         "devices": 2}
    saved = sorted(int(p.name) for p in (multi / "run" / "checkpoints").iterdir())
    assert saved[-1] == step and all(s % 2 == 0 for s in saved[:-1]), saved
    second = _run("train", multi, 2, "--epochs", EPOCHS)

    summary = json.loads((multi / "results.json").read_text())
    reference = json.loads((single / "results.json").read_text())
    assert summary["resumed_from"] == step and reference["resumed_from"] is None
    assert (summary["processes"], reference["processes"]) == (2, 1)
    assert summary["accuracy"] == reference["accuracy"]
    assert summary["test_loss"] == pytest.approx(reference["test_loss"], rel=1e-5)
    for got, want in zip(_state(multi), _state(single), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    # process 0 alone writes: each step once in metrics.jsonl, and process 1 logs no progress
    records = [json.loads(line)
               for line in (multi / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, 13))
    for log in (first[1], second[1]):
        assert "step 1/12" not in log and "Test accuracy" not in log
    assert "Test accuracy" in second[0]


def test_tfdata_processes_read_disjoint_parts_covering_the_split(tmp_path):
    """Over an epoch every training example is read by exactly one process, each process its
    share of every global batch (the multi-process batch order is not the single-process one)."""
    pytest.importorskip("tensorflow")
    _run("tfdata", tmp_path / "single", 1)
    _run("tfdata", tmp_path / "multi", 2)
    with np.load(tmp_path / "single" / "tfdata_0.npz") as whole, \
            np.load(tmp_path / "multi" / "tfdata_0.npz") as part0, \
            np.load(tmp_path / "multi" / "tfdata_1.npz") as part1:
        assert sorted(whole["ids"]) == list(range(96))
        assert set(part0["ids"]).isdisjoint(part1["ids"])
        assert sorted(np.concatenate([part0["ids"], part1["ids"]])) == list(range(96))
        assert list(part0["rows"]) == list(part1["rows"]) == [8] * 6  # half of each batch of 16
