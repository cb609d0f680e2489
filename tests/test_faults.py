"""Faults a user meets, each through the real command where it is cheap: Ctrl-C and SIGTERM of
the converter, bad overrides and config files, an unwritable or busy workdir, a finished workdir
rerun, the classical path's errors, a full disk under checkpoints / the converter / the grid's
store, an unreadable latest checkpoint.

Slow cases (SIGKILL of training at random points, a full disk under a real training run) are in
``benchmarks/faults.py``; cases other tests cover (exact resume after SIGTERM + SIGKILL in
test_train, a killed grid and failing/timed-out configurations in test_classical, unreadable
FITS / CSV / PNG inputs in test_lamost and test_datasets) are not repeated here.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from astrospectra_jax import convert
from astrospectra_jax.classical import grid, store
from astrospectra_jax.data import layout
from astrospectra_jax.training import checkpointing
from astrospectra_jax.training.state import TrainState

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = str(REPO / "configs" / "quickstart.py")


def run_main(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "main.py"), *args], cwd=REPO, env=env,
                          text=True, capture_output=True, timeout=timeout)


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


# ----------------------------------------------------------------------------- main.py errors

@pytest.mark.parametrize("args, expected", [
    (["--config.bathc_size=3"],
     "error: --config.bathc_size: {config} has no field 'bathc_size'; did you mean "
     "--config.batch_size?"),
    (["--config.learning_rate=nan"],
     "error: --config.learning_rate: {config} has no field 'learning_rate'; did you mean "
     "--config.optimizer.learning_rate?"),
    (["--config=configs/no_such.py"],
     "error: --config=configs/no_such.py: no such config file configs/no_such.py"),
])
def test_bad_override_or_config_file_is_one_error_line(tmp_path, args, expected):
    result = run_main(f"--config={QUICKSTART}", f"--workdir={tmp_path / 'run'}", *args)
    assert result.returncode == 2
    assert error_lines(result) == [line for line in result.stderr.splitlines()
                                   if line.startswith("error:")]
    assert len(error_lines(result)) == 1
    assert error_lines(result)[0].startswith(expected.format(config=QUICKSTART))
    assert not (tmp_path / "run").exists()  # refused before anything was created


def test_unwritable_workdir_is_named(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = run_main(f"--config={QUICKSTART}", f"--workdir={blocker / 'run'}")
    assert result.returncode == 1
    assert error_lines(result) == [f"error: cannot write to --workdir={blocker / 'run'}: Not a "
                                   "directory. Choose a writable folder."]


def test_busy_workdir_refuses_and_a_stale_lock_is_taken_over(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    results = {"accuracy": 0.5, "wall_time_s": 12.0}
    (workdir / "results.json").write_text(json.dumps(results))
    with open(workdir / main_lock_name(), "w") as lock:  # a live run holds the lock
        lock.write("process 4242 (python main.py ...)\n")
        lock.flush()
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = run_main(f"--config={QUICKSTART}", f"--workdir={workdir}")
    assert busy.returncode == 1
    assert error_lines(busy) == [f"error: --workdir={workdir} is in use by process 4242 "
                                 f"(python main.py ...) (lock {workdir / main_lock_name()}); "
                                 "wait for that run to end or use another --workdir."]
    # The lock file is left behind by a dead process: taken over. The run there is finished,
    # so its results are kept as they are.
    rerun = run_main(f"--config={QUICKSTART}", f"--workdir={workdir}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "holds a finished run (results.json: test accuracy 0.5000); kept" in rerun.stdout
    assert json.loads((workdir / "results.json").read_text()) == results


def test_help_exits_0():
    result = run_main("--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--workdir" in result.stdout + result.stderr


@pytest.mark.parametrize("override", ["--config.batch_size=0", "--config.log_every_steps=0"])
def test_invalid_value_leaves_the_workdir_untouched(tmp_path, override):
    new = tmp_path / "new" / "run"
    result = run_main(f"--config={QUICKSTART}", f"--workdir={new}", override)
    assert result.returncode == 2
    field = override.split(".", 1)[1].split("=")[0]
    assert error_lines(result) == [f"error: invalid config: config.{field}=0 must be a "
                                   "positive integer"]
    assert not (tmp_path / "new").exists()  # no folder, no .lock, no config.json
    existing = tmp_path / "existing"
    existing.mkdir()
    assert run_main(f"--config={QUICKSTART}", f"--workdir={existing}", override).returncode == 2
    assert os.listdir(existing) == []


def test_lock_goes_when_the_run_ends(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "results.json").write_text(json.dumps({"accuracy": 0.5}))
    result = run_main(f"--config={QUICKSTART}", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (workdir / main_lock_name()).exists()


def main_lock_name() -> str:
    return ".lock"


def test_classical_path_without_its_real_data_is_one_line(tmp_path):
    """(An unknown dataset on this path: benchmarks/faults.py.)"""
    empty = tmp_path / "tfds"
    empty.mkdir()
    result = run_main(f"--config={REPO / 'configs/classical_v1.py'}",
                      f"--workdir={tmp_path / 'run'}", f"--config.data_dir={empty}",
                      "--config.dataset=astrospectra_mnist/v1")
    assert result.returncode == 1
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("error: astrospectra_mnist/v1 is real LAMOST")
    assert "astrospectra_mnist/v1_synthetic" in lines[0]


# ----------------------------------------------------------------------------- convert

# Restores SIGINT's default, then execs the command in the same process (same pid), whose Python
# then installs its KeyboardInterrupt handler. Not a ``preexec_fn``: that runs Python's fork
# hooks, and JAX's (installed once any test here has used JAX) warns that os.fork() was called.
_SIGINT_DEFAULT_EXEC = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def start_convert(out: Path, *extra: str) -> subprocess.Popen:
    """The converter in its own process group, with SIGINT handled (a background shell starts
    children with SIGINT ignored)."""
    return subprocess.Popen(
        [sys.executable, "-c", _SIGINT_DEFAULT_EXEC, "-m", "astrospectra_jax.convert",
         "synthetic", "--task", "v1", "--out", str(out), "--no-progress", *extra],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # zombies hold nothing
                members.append(int(entry.name))
    return members


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to list the workers")
@pytest.mark.parametrize("signum, code, name", [(signal.SIGINT, 130, "Ctrl-C"),
                                                (signal.SIGTERM, 75, "SIGTERM")])
def test_interrupted_converter_stops_its_workers_and_writes_nothing(tmp_path, signum, code,
                                                                   name):
    out = tmp_path / "out"
    process = start_convert(out, "--train", "6000", "--test", "1000", "--workers", "2")
    try:
        deadline = time.monotonic() + 60
        while len(group_members(process.pid)) < 3:  # the parent and its spawned workers
            assert process.poll() is None, process.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no workers started"
            time.sleep(0.1)
        time.sleep(1.0)  # into the simulation
        stopped = time.monotonic()
        os.killpg(process.pid, signum) if signum == signal.SIGINT else process.terminate()
        _, err = process.communicate(timeout=30)
        assert time.monotonic() - stopped < 15
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == code
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip() == (f"python -m astrospectra_jax.convert: interrupted by {name}; nothing "
                           f"was written to {out}. Rerun the same command to convert again.")
    assert os.listdir(out) == []
    deadline = time.monotonic() + 10
    while group_members(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(process.pid) == []  # no orphaned workers


def dead_pid() -> int:
    pid = 4_000_000
    while Path(f"/proc/{pid}").exists():
        pid += 1
    return pid


def test_converter_removes_what_a_killed_conversion_left(tmp_path):
    stale = tmp_path / f".convert-v1-{dead_pid()}-abcd1234"
    live = tmp_path / f".convert-v1-{os.getpid()}-efgh5678"  # a conversion still running
    for folder in (stale, live):
        (folder / "AstroSpectra-MNIST").mkdir(parents=True)
    assert convert.main(["synthetic", "--task", "v1", "--train", "6", "--test", "3",
                         "--workers", "1", "--no-progress", "--out", str(tmp_path)]) == 0
    assert not stale.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "AstroSpectra-MNIST", "LineAstroSpectra"]


def test_full_disk_during_conversion_keeps_the_previous_output(tmp_path, monkeypatch, capsys):
    argv = ["synthetic", "--task", "v1", "--train", "6", "--test", "3", "--workers", "1",
            "--no-progress", "--out", str(tmp_path)]
    assert convert.main(argv) == 0
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    calls = {"n": 0}

    def full_disk(path, image):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        path.write_bytes(layout.encode_png(image))

    monkeypatch.setattr(layout, "_write_png", full_disk)
    with pytest.raises(SystemExit) as exit_:
        convert.main(argv + ["--overwrite", "--seed", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "error: [Errno 28] No space left on device:" in err and ".png" in err
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


# ----------------------------------------------------------------------------- checkpoints

# A failed restore may leave TensorStore reads that report into a closed event loop.
_closed_loop_reports = pytest.mark.filterwarnings(
    "ignore:(?s).*Event loop is closed:pytest.PytestUnraisableExceptionWarning")


def tiny_state(value: float, size: int = 64) -> TrainState:
    return TrainState(jnp.int32(value), {"w": jnp.full((size, size), value, jnp.float32)},
                      {"count": jnp.int32(value)}, {"mu": jnp.full((size,), value, jnp.float32)})


def save(manager, step: int, state: TrainState) -> None:
    checkpointing.save(manager, state, {"step": step})


@_closed_loop_reports
def test_unreadable_latest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    manager = checkpointing.open_manager(tmp_path / "checkpoints", keep=3)
    for step in (1, 2):
        save(manager, step, tiny_state(step))
    checkpointing.finish(manager, 2)
    manager.close()
    for path in (tmp_path / "checkpoints" / "2").rglob("*"):
        if path.is_file() and path.parent.name == "d":  # the array data: truncated
            path.write_bytes(path.read_bytes()[:10])

    manager = checkpointing.open_manager(tmp_path / "checkpoints", keep=3)
    state, step = checkpointing.restore_latest(manager, tiny_state(0))
    assert step == 1 and float(state.params["w"][0, 0]) == 1.0 and int(state.step) == 1
    assert manager.latest_step() == 1
    moved = list((tmp_path / checkpointing.UNREADABLE_DIR).iterdir())
    assert [p.name.split("-")[0] for p in moved] == ["2"]
    save(manager, 2, tiny_state(5))  # the step can be saved again
    checkpointing.finish(manager, 2)
    assert manager.all_steps() == [1, 2]
    manager.close()


@_closed_loop_reports
def test_checkpoint_of_another_experiment_is_not_taken_for_corruption(tmp_path):
    manager = checkpointing.open_manager(tmp_path / "checkpoints", keep=3)
    save(manager, 1, tiny_state(1))
    checkpointing.finish(manager, 1)
    other = tiny_state(0, size=3)
    with pytest.raises(ValueError, match="does not match this config's model/optimizer"):
        checkpointing.restore_latest(manager, other)
    assert manager.all_steps() == [1]  # kept where it was
    manager.close()


@_closed_loop_reports
def test_failed_save_names_the_cause_and_keeps_the_last_complete_checkpoint(tmp_path,
                                                                            monkeypatch):
    manager = checkpointing.open_manager(tmp_path / "checkpoints", keep=3)
    save(manager, 1, tiny_state(1))
    checkpointing.finish(manager, 1)
    partial = tmp_path / "checkpoints" / "2.orbax-checkpoint-tmp-123"
    partial.mkdir()  # what an interrupted write leaves

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manager, "save", full_disk)
    with pytest.raises(checkpointing.CheckpointSaveError) as error:
        save(manager, 2, tiny_state(2))
    assert str(error.value) == (
        f"cannot save the checkpoint after step 2 in {tmp_path / 'checkpoints'}: no space left "
        "on device (ENOSPC). Training stopped; the last complete checkpoint, step 1, is kept. "
        "Free space (or fix the folder) and rerun the same command to resume.")
    monkeypatch.undo()
    manager.close()
    # the rerun's manager (Orbax) removes what the interrupted write left, in the background
    # (its next save waits for that), so this waits for it too
    checkpointing.open_manager(tmp_path / "checkpoints", keep=3).close()
    deadline = time.monotonic() + 30
    while partial.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]


# ----------------------------------------------------------------------------- the grid's store

def test_full_disk_under_the_grid_store_keeps_finished_records(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = (rng.normal(size=(60, 6)) + np.eye(3, 6)[y] * 3).astype(np.float32)
    rows = grid.grid_rows()[:3]
    store_dir = tmp_path / "store"
    original = store.write_record
    writes = {"n": 0}

    def full_disk(folder, record):
        writes["n"] += 1
        if writes["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder))
        return original(folder, record)

    monkeypatch.setattr(store, "write_record", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        grid.run_grid(x, y, x, y, rows, store_dir=store_dir, n_jobs=1, progress=False)
    kept = {p.name: p.read_bytes() for p in store_dir.glob("*.json")}
    assert len(kept) == 1 and not [p for p in store_dir.iterdir() if p.suffix != ".json"]
    monkeypatch.undo()
    records = grid.run_grid(x, y, x, y, rows, store_dir=store_dir, n_jobs=1, progress=False)
    assert sum(r["reused"] for r in records) == 1
    assert all(r["status"] == "ok" for r in records)
    assert all((store_dir / name).read_bytes() == data for name, data in kept.items())


# ----------------------------------------------------------------------------- converter Ctrl-C

def test_converter_ctrl_c_at_random_moments_is_one_line(tmp_path):
    """A few tries of benchmarks/faults.py's 50: each stops with exit 130 and its one line,
    never "Exception ignored ... Bad file descriptor" from the worker pool."""
    from benchmarks import faults

    rng = np.random.default_rng(0)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    # From 3 s: a Ctrl-C while Python still imports the package (astropy, TFDS; the first
    # second or two on a loaded 2-core machine) ends in KeyboardInterrupt's traceback before
    # any of the converter's code runs (not fixed yet; benchmarks/faults.py tries from 0.5 s).
    for i, delay in enumerate(rng.uniform(3.0, 8.0, size=3)):
        assert faults.converter_ctrl_c_once(tmp_path / f"out{i}", float(delay), env) is None
