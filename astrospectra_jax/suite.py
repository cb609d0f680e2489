"""Run the deep models of Table 2 over datasets and seeds, one ``main.py`` workdir per run.

    python -m astrospectra_jax.suite --dataset astrospectra_mnist/v2_synthetic --models all \\
        --seeds 3 --runs runs/ [--input-size config|native|paper] [--set num_epochs=5 ...]
        [--main main.py] [--configs configs/] [--dry-run]

Each run is ``main.py --config=configs/<v1|v2>_<model>.py`` (``line_<v>_conv1d.py`` for the
line datasets; Fashion-MNIST uses the v2 configs) in
``<runs>/<dataset with / as _>/<model>_<input size>/seed<k>``, its output in ``train.log`` there.
By default the seeds of a model train together as one ensemble run (``config.ensemble_size``:
consecutive seeds s .. s + K - 1 in ``.../seeds<s>-<s+K-1>``, one process and one compilation
for all, each member the model its seed's own run trains; the report counts each member as its
seed's run); ``--separate`` keeps one run per seed.
A finished run (``results.json``) is skipped, an unfinished one rerun (it resumes), a failed
one recorded (``suite_run.json``, its log) and the suite goes on; exit status 1 if any failed.
``python -m astrospectra_jax.report --runs <runs>`` summarises; ``--main`` and ``--configs``
default to this checkout's ``main.py`` and ``configs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.machinery
import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from astrospectra_jax import interrupts, results
from astrospectra_jax.data import catalogue

# The checkout this package sits in: the defaults of --main and --configs.
_CHECKOUT = Path(__file__).resolve().parents[1]
DEFAULT_MAIN = _CHECKOUT / "main.py"
DEFAULT_CONFIGS = _CHECKOUT / "configs"
INPUT_SIZE_CHOICES = ("config", "native", "paper")
PAPER_INPUT_SIZE = 224  # the torchvision architectures on upsampled images
# Fields the suite sets itself for every run; --set may not change them.
_RESERVED = {"dataset": "--dataset", "seed": "--seeds", "model.input_size": "--input-size",
             "model.name": "--models", "data_dir": "--data-dir",
             "ensemble_size": "--seeds (and --separate)"}
_STOP_GRACE_S = 120.0  # after SIGTERM a run saves a checkpoint before it exits


class SuiteError(ValueError):
    """A bad option; the message names it."""


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    dataset: str
    model: str
    input_size: int
    seed: int
    config: Path
    workdir: Path
    command: tuple[str, ...]
    cwd: Path  # main.py's folder: configs import ``configs.base`` from there
    ensemble_size: int = 1  # > 1: seeds seed .. seed + ensemble_size - 1 in one ensemble run

    @property
    def name(self) -> str:
        if self.ensemble_size > 1:
            return (f"{self.dataset} {self.model}_{self.input_size} "
                    f"seeds{self.seed}-{self.seed + self.ensemble_size - 1}")
        return f"{self.dataset} {self.model}_{self.input_size} seed{self.seed}"

    @property
    def log(self) -> Path:
        return self.workdir / results.SUITE_LOG

    def state(self) -> str:
        """``finished`` (results.json), ``partial`` (started: resumes) or ``new``."""
        if (self.workdir / results.RESULTS_JSON).is_file():
            return "finished"
        return "partial" if (self.workdir / results.CHECKPOINTS_DIR).is_dir() else "new"


# ----------------------------------------------------------------------------- the plan

def image_models() -> tuple[str, ...]:
    """The eight CNNs of Table 2, in the registry's names."""
    from astrospectra_jax import paper

    return tuple(paper.DEEP_MODEL_NAMES)


def select_models(spec: str, dataset: str) -> list[str]:
    """``all`` (the Table 2 CNNs, or conv1d for line datasets) or a comma-separated list."""
    from astrospectra_jax import models

    line = catalogue.is_line_dataset(dataset)
    if spec.strip() == "all":
        return ["conv1d"] if line else list(image_models())
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise SuiteError(f"--models {spec!r}: no model named")
    for name in names:
        if name not in models.MODEL_NAMES:
            raise SuiteError(f"--models: unknown model {name!r}; known: "
                             f"{', '.join(models.MODEL_NAMES)}, or 'all'")
        if models.is_line_model(name) != line:
            kind = "line" if line else "image"
            raise SuiteError(f"--models: {name!r} does not take {kind} data, which "
                             f"{dataset!r} holds")
    return names


@contextlib.contextmanager
def _configs_package(folder: Path):
    """Bind the package name ``configs`` to ``folder`` while a config file loads, so that its
    ``from configs.base import ...`` reads that folder's base.py (as ``main.py`` run from
    the checkout does), without touching sys.path; any other ``configs`` is put back."""
    def ours() -> list[str]:
        return [n for n in sys.modules if n == "configs" or n.startswith("configs.")]

    saved = {name: sys.modules.pop(name) for name in ours()}
    spec = importlib.machinery.ModuleSpec("configs", None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    sys.modules["configs"] = importlib.util.module_from_spec(spec)
    try:
        yield
    finally:
        for name in ours():
            del sys.modules[name]
        sys.modules.update(saved)


def load_config(path: Path):
    """``get_config()`` of a config file; SuiteError naming the file if it cannot run."""
    path = Path(path)
    try:
        with _configs_package(path.parent):
            spec = importlib.util.spec_from_file_location(f"configs.{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.get_config()
    except Exception as error:
        raise SuiteError(f"cannot load {path}: {type(error).__name__}: {error}") from error


def config_input_size(config: Path) -> int:
    """``model.input_size`` of a config file (its ``get_config()``)."""
    try:
        return int(load_config(config).model.input_size)
    except (AttributeError, TypeError, ValueError) as error:
        raise SuiteError(f"cannot read model.input_size from {config}: "
                         f"{type(error).__name__}: {error}") from error


def input_size(model: str, choice: str, config: Path | None = None) -> int:
    """``config``: the size the config file sets; ``native``: the model's first size (28 or
    721); ``paper``: 224 where the model has the torchvision architecture, else native."""
    from astrospectra_jax import models

    if choice not in INPUT_SIZE_CHOICES:
        raise SuiteError(f"--input-size {choice!r}: choose one of {', '.join(INPUT_SIZE_CHOICES)}")
    sizes = models.input_sizes(model)
    if choice == "config":
        if config is None:
            raise SuiteError("--input-size config needs the config file")
        size = config_input_size(config)
        if size not in sizes:
            raise SuiteError(f"{config} sets model.input_size={size}, which {model} does not "
                             f"support ({', '.join(map(str, sizes))})")
        return size
    if choice == "paper" and PAPER_INPUT_SIZE in sizes:
        return PAPER_INPUT_SIZE
    return sizes[0]


def config_path(dataset: str, model: str, config_dir: Path = DEFAULT_CONFIGS) -> Path:
    """configs/<v1|v2>_<model>.py, configs/line_<v>_conv1d.py for line vectors; Fashion-MNIST
    runs with the v2 configs."""
    if dataset == "fashion_mnist":
        version = "v2"
    else:
        version = dataset.split("/", 1)[1][:2]
    prefix = f"line_{version}" if catalogue.is_line_dataset(dataset) else version
    return config_dir / f"{prefix}_{model}.py"


def run_dir(runs: Path, dataset: str, model: str, size: int, seed: int,
            ensemble_size: int = 1) -> Path:
    name = f"seed{seed}" if ensemble_size == 1 else f"seeds{seed}-{seed + ensemble_size - 1}"
    return Path(runs) / dataset.replace("/", "_") / f"{model}_{size}" / name


def seed_groups(seeds: Sequence[int], ensemble: bool) -> list[tuple[int, int]]:
    """(first seed, ensemble size) per run: each seed alone, or with ``ensemble`` each stretch
    of consecutive seeds as one ensemble (member k has seed first + k)."""
    groups: list[list[int]] = []
    for seed in seeds:
        if ensemble and groups and seed == groups[-1][0] + groups[-1][1]:
            groups[-1][1] += 1
        else:
            groups.append([seed, 1])
    return [(first, size) for first, size in groups]


def parse_seeds(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``0,4`` -> seeds 0 and 4."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise SuiteError(f"--seeds {text!r}: give a count (3) or a list (0,4)") from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise SuiteError(f"--seeds {text!r}: need at least one seed, all >= 0 and distinct")
    return seeds


def parse_overrides(items: Sequence[str]) -> list[str]:
    """``key=value`` -> ``--config.key=value``."""
    flags = []
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().removeprefix("config.")
        if not sep or not key:
            raise SuiteError(f"--set {item!r}: expected key=value, e.g. --set num_epochs=1")
        if key in _RESERVED:
            raise SuiteError(f"--set {item!r}: {key} is set per run; use {_RESERVED[key]}")
        flags.append(f"--config.{key}={value}")
    return flags


def plan(datasets: Sequence[str], models: str, seeds: Sequence[int], runs: str | Path, *,
         input_size_choice: str = "config", overrides: Sequence[str] = (),
         data_dir: str | None = None, python: str = sys.executable,
         config_dir: Path = DEFAULT_CONFIGS, main: Path = DEFAULT_MAIN,
         ensemble: bool = False) -> list[PlannedRun]:
    """Every (dataset, model, seed) run, in that order (``ensemble``: consecutive seeds as one
    ensemble run, see ``seed_groups``); raises SuiteError for a bad option or a missing config
    file. Each run is ``python main --config=<config_dir>/...``."""
    main, config_dir = Path(main).absolute(), Path(config_dir).absolute()
    if not main.is_file():
        raise SuiteError(f"--main {main}: no such file")
    if not config_dir.is_dir():
        raise SuiteError(f"--configs {config_dir}: no such folder")
    known = catalogue.KNOWN_DATASETS
    flags = parse_overrides(overrides)
    runs = Path(runs).absolute()
    planned = []
    for dataset in datasets:
        if dataset not in known:
            raise SuiteError(f"--dataset: unknown {dataset!r}; known: {', '.join(known)}")
        for model in select_models(models, dataset):
            config = config_path(dataset, model, config_dir)
            if not config.is_file():
                raise SuiteError(f"no config for {model} on {dataset}: {config} does not exist")
            size = input_size(model, input_size_choice, config)
            for seed, members in seed_groups(seeds, ensemble):
                workdir = run_dir(runs, dataset, model, size, seed, members)
                command = [python, str(main), f"--config={config}", f"--workdir={workdir}",
                           f"--config.dataset={dataset}", f"--config.seed={seed}",
                           f"--config.model.input_size={size}"]
                if members > 1:
                    command.append(f"--config.ensemble_size={members}")
                if data_dir:
                    command.append(f"--config.data_dir={Path(data_dir).absolute()}")
                planned.append(PlannedRun(dataset, model, size, seed, config, workdir,
                                          tuple(command + flags), cwd=main.parent,
                                          ensemble_size=members))
    return planned


# ----------------------------------------------------------------------------- running

def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_record(workdir: Path) -> results.SuiteRun | None:
    """The suite's record of a run (``suite_run.json``), or None."""
    try:
        return results.read_json(Path(workdir) / results.SUITE_RECORD)
    except (OSError, ValueError):
        return None


def _settings(command: Sequence[str]) -> list[str]:
    """The --config flags of a command: what makes two runs the same experiment."""
    return sorted(a for a in command if a.startswith("--config"))


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text[-lines:])


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def execute_one(run: PlannedRun, *, resumed: bool) -> dict:
    """Run one command with its output in the run's log; returns its record (also written
    to ``suite_run.json``). Ctrl-C asks the run to checkpoint and stop (SIGTERM), then
    re-raises KeyboardInterrupt."""
    run.workdir.mkdir(parents=True, exist_ok=True)
    record: results.SuiteRun = {"name": run.name, "dataset": run.dataset, "model": run.model,
              "input_size": run.input_size, "seed": run.seed,
              "ensemble_size": run.ensemble_size, "command": list(run.command),
              "log": str(run.log), "resumed": resumed, "started_at": _now(), "status": "running"}
    results.write_json(run.workdir / results.SUITE_RECORD, record)
    start = time.time()
    interrupted = False
    with open(run.log, "a") as log:
        log.write(f"\n=== {_now()} suite: {shlex.join(run.command)}\n")
        log.flush()
        # A session of its own: Ctrl-C reaches the suite only, which stops the run cleanly.
        process = subprocess.Popen(run.command, cwd=run.cwd, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                   start_new_session=True)
        try:
            returncode = process.wait()
        except KeyboardInterrupt:
            interrupted = True
            process.send_signal(signal.SIGTERM)
            try:
                returncode = process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                returncode = process.wait()
    record.update(returncode=returncode, wall_s=time.time() - start, finished_at=_now())
    if interrupted:
        record.update(status="interrupted", error="stopped by Ctrl-C; rerun to resume")
    elif returncode == interrupts.EXIT_PREEMPTED:  # main.py saved a checkpoint on SIGTERM
        record.update(status="interrupted", error="preempted (SIGTERM); rerun to resume")
    elif returncode != 0:
        record.update(status="failed", error=f"exit status {returncode}")
    elif not (run.workdir / results.RESULTS_JSON).is_file():
        record.update(status="failed",
                      error=f"exit status 0 but no {results.RESULTS_JSON} was written")
    else:
        record["status"] = "ok"
    results.write_json(run.workdir / results.SUITE_RECORD, record)
    if interrupted:
        raise KeyboardInterrupt
    return record


def execute(runs: Sequence[PlannedRun], *, progress: bool = True, out=None) -> dict:
    """Run every unfinished run in order; returns ``{"done", "skipped", "failed", "remaining",
    "elapsed_s", "failures": [record, ...], "warnings": [...]}``."""
    out = out or sys.stdout
    started = time.time()
    summary = {"total": len(runs), "done": 0, "skipped": 0, "failed": 0,
               "remaining": len(runs), "failures": [], "warnings": []}
    pending = []
    for run in runs:
        if run.state() == "finished":
            summary["skipped"] += 1
            summary["remaining"] -= 1
            previous = read_record(run.workdir)
            if previous and _settings(previous["command"]) != _settings(run.command):
                summary["warnings"].append(
                    f"{run.name}: finished earlier with other settings "
                    f"({' '.join(_settings(previous['command']))}); kept as it is. Use another "
                    "--runs folder to run these settings.")
        else:
            pending.append(run)

    bar = tqdm(total=len(pending), unit="run", dynamic_ncols=True, file=out,
               disable=not progress or not pending, desc="suite")
    durations = []

    def postfix(current: str = "") -> None:
        eta = (sum(durations) / len(durations) * summary["remaining"]) if durations else None
        bar.set_postfix_str(
            f"done={summary['done']} skipped={summary['skipped']} failed={summary['failed']} "
            f"remaining={summary['remaining']} ETA={_format_seconds(eta)}"
            + (f" | {current}" if current else ""))

    try:
        for run in pending:
            postfix(run.name)
            record = execute_one(run, resumed=run.state() == "partial")
            durations.append(record["wall_s"])
            summary["remaining"] -= 1
            if record["status"] == "ok":
                summary["done"] += 1
            else:
                summary["failed"] += 1
                summary["failures"].append(record)
                tqdm.write(f"FAILED {run.name} ({record['error']}); log: {run.log}\n"
                           f"{_log_tail(run.log)}", file=out)
            bar.update(1)
        postfix()
    except KeyboardInterrupt:
        summary["interrupted"] = True
    finally:
        bar.close()
        summary["elapsed_s"] = time.time() - started
    return summary


def format_summary(summary: dict) -> str:
    lines = [f"suite: {summary['total']} runs: {summary['done']} done, {summary['skipped']} "
             f"skipped (finished before), {summary['failed']} failed, {summary['remaining']} "
             f"remaining; elapsed {_format_seconds(summary.get('elapsed_s'))}"]
    if summary.get("interrupted"):
        lines.append("interrupted: the running job saved a checkpoint; rerun the same command "
                     "to resume")
    lines += [f"  failed: {r['name']}: {r['error']}; log: {r['log']}"
              for r in summary["failures"]]
    lines += [f"  note: {w}" for w in summary["warnings"]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m astrospectra_jax.suite",
        description="Run Table 2's deep models over a dataset and seeds (one main.py workdir "
                    "per run); finished runs are skipped, unfinished ones resume.")
    parser.add_argument("--dataset", action="append", required=True,
                        help="dataset name (repeat or comma-separate for several), e.g. "
                             "astrospectra_mnist/v2_synthetic")
    parser.add_argument("--models", default="all",
                        help="'all' (the eight CNNs; conv1d for line datasets) or a "
                             "comma-separated list, e.g. lenet,resnet18")
    parser.add_argument("--seeds", default="1",
                        help="number of seeds (3 -> 0,1,2) or a comma-separated list; "
                             "consecutive seeds train as one ensemble run unless --separate")
    parser.add_argument("--separate", action="store_true",
                        help="one run (process) per seed instead of one ensemble run per "
                             "model")
    parser.add_argument("--runs", required=True, help="folder holding one workdir per run")
    parser.add_argument("--input-size", default="config", choices=INPUT_SIZE_CHOICES,
                        help="config: as each config file sets it; native: 28x28 images; "
                             "paper: 224x224 for the torchvision architectures, as in the "
                             "paper")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="config override for every run, e.g. --set num_epochs=1 "
                             "--set batch_size=256")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (config.data_dir)")
    parser.add_argument("--configs", "--config-dir", dest="configs",
                        default=str(DEFAULT_CONFIGS),
                        help="folder of the <v1|v2>_<model>.py configs (default: this "
                             "checkout's configs/)")
    parser.add_argument("--main", default=str(DEFAULT_MAIN),
                        help="the main.py that runs each config (default: this checkout's)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the commands (and whether each is new, resumes or is "
                             "skipped) without running anything")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from astrospectra_jax import logs

    logs.setup()
    parser = build_parser()
    args = parser.parse_args(argv)
    datasets = [d.strip() for item in args.dataset for d in item.split(",") if d.strip()]
    try:
        runs = plan(datasets, args.models, parse_seeds(args.seeds), args.runs,
                    input_size_choice=args.input_size, overrides=args.overrides,
                    data_dir=args.data_dir, config_dir=Path(args.configs),
                    main=Path(args.main), ensemble=not args.separate)
    except SuiteError as error:
        parser.error(str(error))
    if args.dry_run:
        label = {"finished": "skip  ", "partial": "resume", "new": "run   "}
        for run in runs:
            print(f"{label[run.state()]} {shlex.join(run.command)}")
        return 0
    with interrupts.sigterm_raises():  # a scheduler's SIGTERM stops like Ctrl-C
        summary = execute(runs, progress=not args.no_progress)
    print(format_summary(summary), flush=True)
    if summary.get("interrupted"):
        return 130
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
