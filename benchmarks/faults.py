"""Fault injection on the real commands, the slow cases (tests/test_faults.py has the fast ones).

    python -m benchmarks.faults [--work DIR] [--kills 3] [--seed 0] [--ctrl-c-tries 50]

Each case runs ``main.py`` or the converter as a subprocess on the small simulated dataset
(astrospectra_mnist/v1_synthetic_mini, LeNet, 74 steps), injects the fault, checks the outcome,
and prints one row of a Markdown table: fault, entry point, outcome, data lost. A full disk needs
a size-limited tmpfs (root); without one that case is reported as skipped.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASET = "astrospectra_mnist/v1_synthetic_mini"
TOTAL_STEPS = 74  # 2 epochs of 37 steps (1200 examples, batch 32)


def fields(data_dir: Path, **overrides) -> list[str]:
    values = {"dataset": DATASET, "data_dir": str(data_dir), "model.name": "lenet",
              "batch_size": 32, "num_epochs": 2, "steps_per_call": 2,
              "checkpoint_every_steps": 4, "keep_checkpoints": 2, "log_every_steps": 10,
              **overrides}
    return [f"--config.{k}={v}" for k, v in values.items()]


class Runner:
    def __init__(self, work: Path, seed: int):
        self.work, self.rng = work, random.Random(seed)
        self.data_dir = work / "tfds"
        self.env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO),
                    "JAX_COMPILATION_CACHE_DIR": str(work / "xla_cache"),
                    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
        self.rows: list[tuple[str, str, str, str]] = []

    def command(self, workdir: Path, **overrides) -> list[str]:
        return [sys.executable, str(REPO / "main.py"),
                f"--config={REPO / 'configs/quickstart.py'}", f"--workdir={workdir}",
                *fields(self.data_dir, **overrides)]

    def start(self, command) -> subprocess.Popen:
        return subprocess.Popen(command, cwd=REPO, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def run(self, command, timeout=900) -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=REPO, env=self.env, text=True, capture_output=True,
                              timeout=timeout)

    def record(self, fault: str, entry: str, ok: bool, outcome: str, lost: str = "none"):
        self.rows.append((fault, entry, ("" if ok else "FAILED: ") + outcome, lost))
        print(f"  {'ok ' if ok else 'BAD'} {fault}: {outcome}", file=sys.stderr, flush=True)


def steps_in(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) \
        if folder.is_dir() else []


def final_params(workdir: Path) -> list[np.ndarray]:
    import jax
    import orbax.checkpoint as ocp

    path = workdir / "checkpoints" / str(TOTAL_STEPS) / "state"
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          checkpointer.metadata(path).item_metadata.tree)
    state = checkpointer.restore(path, target)
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state["params"])]


def same_params(a: Path, b: Path) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(final_params(a), final_params(b),
                                                      strict=True))


def single_error_line(stderr: str) -> str | None:
    lines = [line for line in stderr.splitlines() if line.startswith(("error:", "interrupted"))]
    return lines[0] if len(lines) == 1 and "Traceback" not in stderr else None


# ----------------------------------------------------------------------------- cases

def reference(r: Runner) -> Path:
    workdir = r.work / "reference"
    result = r.run(r.command(workdir))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def repeated_sigkill(r: Runner, ref: Path, kills: int) -> None:
    workdir = r.work / "sigkill"
    during_write = 0
    for _ in range(kills):
        process = r.start(r.command(workdir))
        before = max(steps_in(workdir), default=0)
        target_write = r.rng.random() < 0.5
        deadline = time.time() + 600
        while time.time() < deadline and process.poll() is None:
            partial = list((workdir / "checkpoints").glob("*.orbax-checkpoint-tmp*")) \
                if (workdir / "checkpoints").is_dir() else []
            if target_write and partial:
                during_write += 1
                break
            if not target_write and max(steps_in(workdir), default=0) > before and \
                    r.rng.random() < 0.2:
                break
            time.sleep(0.01)
        process.kill()
        process.communicate()
    result = r.run(r.command(workdir))
    ok = result.returncode == 0 and same_params(ref, workdir)
    r.record(f"SIGKILL x{kills} at random points ({during_write} during a checkpoint write)",
             "main.py (training)", ok,
             "rerun resumed from the last complete checkpoint; final parameters bit-identical "
             "to an uninterrupted run" if ok else result.stderr[-300:])


def corrupt_latest(r: Runner, ref: Path) -> None:
    workdir = r.work / "corrupt"
    result = r.run(r.command(workdir, max_steps=40))  # checkpoints 36 and 40 kept
    assert result.returncode == 0, result.stderr[-2000:]
    (workdir / "results.json").unlink()  # as if stopped at step 40
    for path in (workdir / "checkpoints" / "40").rglob("*"):
        if path.is_file() and path.parent.name == "d":
            path.write_bytes(path.read_bytes()[:10])
    result = r.run(r.command(workdir))
    warned = "checkpoint" in result.stderr and "is unreadable" in result.stderr
    ok = result.returncode == 0 and warned and same_params(ref, workdir)
    r.record("truncated latest checkpoint", "main.py (training)", ok,
             "warned, moved it to checkpoints_unreadable/, resumed from the previous one; "
             "final parameters bit-identical" if ok else result.stderr[-300:])


def sigterm_and_ctrl_c(r: Runner, ref: Path) -> None:
    workdir = r.work / "signals"
    outcomes = []
    for signum, code in ((signal.SIGTERM, 75), (signal.SIGINT, 130)):
        process = r.start(r.command(workdir))
        before = max(steps_in(workdir), default=0)
        while max(steps_in(workdir), default=0) <= before and process.poll() is None:
            time.sleep(0.05)
        os.killpg(process.pid, signum)
        started = time.time()
        _, err = process.communicate(timeout=120)
        outcomes.append((process.returncode == code and single_error_line(err) is not None
                         if signum == signal.SIGINT else process.returncode == code,
                         time.time() - started))
    result = r.run(r.command(workdir))
    ok = all(o for o, _ in outcomes) and result.returncode == 0 and same_params(ref, workdir)
    r.record("SIGTERM, then Ctrl-C, then rerun", "main.py (training)", ok,
             f"exit 75 after saving, exit 130 with one line (stopped in "
             f"{max(t for _, t in outcomes):.1f} s); rerun bit-identical"
             if ok else f"{outcomes} {result.stderr[-300:]}")


def two_runs(r: Runner) -> None:
    workdir = r.work / "two_runs"
    first = r.start(r.command(workdir))
    while not (workdir / ".lock").exists() and first.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    second = r.run(r.command(workdir))
    first_out, first_err = first.communicate(timeout=900)
    line = single_error_line(second.stderr) or ""
    ok = second.returncode == 1 and "is in use by process" in line and first.returncode == 0
    r.record("two runs on one workdir", "main.py", ok,
             "the second refused naming the first's PID; the first finished" if ok
             else second.stderr[-300:] + first_err[-300:])


def full_disk_training(r: Runner) -> None:
    mount = r.work / "small_disk"
    mount.mkdir(exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1300k", "tmpfs", str(mount)]).returncode:
        r.record("disk full during a checkpoint", "main.py (training)", True,
                 "skipped: needs root to mount a small tmpfs", "-")
        return
    try:
        result = r.run(r.command(mount / "run", checkpoint_every_steps=10))
        line = single_error_line(result.stderr) or ""
        complete = steps_in(mount / "run")
        partial = list((mount / "run" / "checkpoints").glob("*.orbax-checkpoint-tmp*"))
        ok = (result.returncode == 1 and "no space left on device" in line and bool(complete)
              and not partial)
        r.record("disk full during a checkpoint (1.3 MB tmpfs)", "main.py (training)", ok,
                 f"stopped at once with one line; checkpoint {complete[-1] if complete else '-'}"
                 " kept, the partial one removed" if ok else result.stderr[-400:],
                 "steps after the last complete checkpoint" if ok else "?")
    finally:
        subprocess.run(["umount", str(mount)])


def classical_errors(r: Runner) -> None:
    result = r.run([sys.executable, str(REPO / "main.py"),
                    f"--config={REPO / 'configs/classical_v1.py'}",
                    f"--workdir={r.work / 'classical_unknown'}",
                    "--config.dataset=astrospectra_mnist/v7"])
    line = single_error_line(result.stderr) or ""
    ok = result.returncode in (1, 2) and "astrospectra_mnist/v7" in line
    r.record("unknown dataset", "main.py (classical grid)", ok,
             f"exit {result.returncode}: {line[:90]}" if ok else result.stderr[-300:], "-")


def converter_kill9(r: Runner) -> None:
    out = r.work / "convert_out"
    command = [sys.executable, "-m", "astrospectra_jax.convert", "synthetic", "--task", "v1",
               "--train", "4000", "--test", "500", "--workers", "2", "--no-progress",
               "--out", str(out)]
    process = r.start(command)
    while not list(out.glob(".convert-*")) and process.poll() is None:
        time.sleep(0.05)
    time.sleep(2)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    left = list(out.glob(".convert-*"))
    result = r.run(command[:-2] + ["--train", "40", "--test", "10", "--workers", "1",
                                   "--out", str(out)])
    ok = bool(left) and result.returncode == 0 and not list(out.glob(".convert-*"))
    r.record("kill -9 mid-conversion, then rerun", "convert", ok,
             "the rerun removed the dead process's temporary folder and wrote the layout"
             if ok else result.stderr[-300:])


CONVERT_CTRL_C = ("python -m astrospectra_jax.convert: interrupted by Ctrl-C; nothing was "
                  "written to {out}. Rerun the same command to convert again.")


def converter_ctrl_c_once(out: Path, delay: float, env: dict | None = None) -> str | None:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) of ``convert synthetic``
    with 2 workers, ``delay`` seconds after it started. None when the command stopped quietly
    (exit 130 with its one line, or exit 0 having finished first); else what went wrong."""
    command = [sys.executable, "-m", "astrospectra_jax.convert", "synthetic", "--task", "v1",
               "--train", "2500", "--test", "500", "--workers", "2", "--no-progress",
               "--out", str(out)]
    env = env or {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        time.sleep(delay)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    expected = CONVERT_CTRL_C.format(out=out)
    if process.returncode == 0 or (process.returncode == 130 and err.strip() == expected):
        return None
    return f"exit {process.returncode} after {delay:.2f} s: {err.strip()[-400:]}"


def converter_ctrl_c(r: Runner, tries: int) -> None:
    """Ctrl-C of the converter at random moments (start-up, simulation, writing): one line
    each time, no "Exception ignored" from the worker pool."""
    failures = []
    for i in range(tries):
        out = r.work / f"convert_ctrl_c_{i}"
        failure = converter_ctrl_c_once(out, r.rng.uniform(0.5, 12.0), r.env)
        if failure:
            failures.append(failure)
        shutil.rmtree(out, ignore_errors=True)
    r.record(f"Ctrl-C of the converter at {tries} random moments", "convert", not failures,
             f"{tries}/{tries} quiet: exit 130 and one line (or finished)" if not failures
             else f"{len(failures)} noisy: {failures[0][:200]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ctrl-c-tries", type=int, default=50,
                        help="Ctrl-C of the converter at this many random moments")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="astrospectra_faults_"))
    work.mkdir(parents=True, exist_ok=True)
    r = Runner(work, args.seed)
    started = time.time()
    ref = reference(r)
    for case in (lambda: repeated_sigkill(r, ref, args.kills), lambda: corrupt_latest(r, ref),
                 lambda: sigterm_and_ctrl_c(r, ref), lambda: two_runs(r),
                 lambda: full_disk_training(r), lambda: classical_errors(r),
                 lambda: converter_kill9(r), lambda: converter_ctrl_c(r, args.ctrl_c_tries)):
        case()
    print("| fault | entry point | outcome | data lost |")
    print("|---|---|---|---|")
    for row in r.rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(r.rows)} cases in {time.time() - started:.0f} s; scratch folder {work}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(not row[2].startswith("FAILED") for row in r.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
