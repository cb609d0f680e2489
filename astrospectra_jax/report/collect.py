"""Finding and reading the runs under a folder, through the records of ``results``.

Deep runs are workdirs holding ``results.json`` (and ``metrics.jsonl``); an ensemble run's
``results.json`` (``members``) counts as one run per member, each with its seed, figures and
curves (``train_member_<k>``), so Table 2's mean and std come out as from separate runs.
Classical grids hold
``classical_results.json``; runs the suite started without results leave ``suite_run.json``,
and ``main.py`` runs stopped early leave ``checkpoints/`` alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from astrospectra_jax import paper, results


def is_synthetic(dataset: str, flag: bool | None = None) -> bool:
    """A result is synthetic if its file says so or its dataset is a ``_synthetic`` one."""
    return bool(flag) or "_synthetic" in dataset


def model_label(model: str, input_size: int | None) -> str:
    return f"{paper.DEEP_MODEL_NAMES.get(model, model)} ({input_size or '?'})"


@dataclasses.dataclass
class DeepRun:
    workdir: Path
    results: results.DeepResults
    train: dict  # {"step": [...], "loss": [...], "accuracy": [...]}
    test: dict

    @property
    def dataset(self) -> str:
        return self.results["dataset"]

    @property
    def model(self) -> str:
        return self.results["model"]

    @property
    def input_size(self) -> int | None:
        return (self.results.get("config") or {}).get("model", {}).get("input_size")

    @property
    def seed(self):
        return self.results.get("seed")

    @property
    def synthetic(self) -> bool:
        return is_synthetic(self.dataset, self.results.get("synthetic"))

    @property
    def label(self) -> str:
        return model_label(self.model, self.input_size)


@dataclasses.dataclass
class ClassicalResult:
    workdir: Path
    dataset: str
    synthetic: bool
    rows: list[dict]
    setup: dict = dataclasses.field(default_factory=dict)  # n_train, train_subsample, budget


def read_curves(path: Path, member: int | None = None) -> tuple[dict, dict]:
    """(train, test) series from metrics.jsonl (an ensemble ``member``'s: ``train_member_<k>``,
    ``test_member_<k>``); a step logged twice (a resumed run) keeps its last record.
    Unreadable lines are skipped."""
    suffix = "" if member is None else f"_member_{member}"
    by_step: dict[tuple[str, int], dict] = {}
    for record in results.read_metrics(path):
        try:
            by_step[(record["split"], int(record["step"]))] = record
        except (ValueError, TypeError):
            continue
    series = {}
    for split in ("train", "test"):
        name = split + suffix
        steps = sorted(step for s, step in by_step if s == name)
        series[split] = {
            "step": steps,
            "loss": [by_step[(name, s)].get("loss", np.nan) for s in steps],
            "accuracy": [by_step[(name, s)].get("accuracy", np.nan) for s in steps],
        }
    return series["train"], series["test"]


def _skip(path: Path) -> bool:
    return results.CHECKPOINTS_DIR in path.parts or any(
        p.startswith(".") for p in path.parts[-3:])


def _read_all(runs_dir: Path, name: str, read, problems: list[str]):
    """(path, read(path)) for every file called ``name`` under ``runs_dir`` (not inside
    checkpoints or hidden folders); a note in ``problems`` for each unreadable one."""
    for path in sorted(Path(runs_dir).rglob(name)):
        if _skip(path.relative_to(runs_dir)):
            continue
        try:
            yield path, read(path)
        except (OSError, ValueError) as error:  # results' readers name the file
            text = str(error) if str(path) in str(error) else f"{path}: {error}"
            problems.append(f"unreadable: {text}")


def find_deep_runs(runs_dir: Path) -> tuple[list[DeepRun], list[str]]:
    """Every readable run (results.json with dataset, model and accuracy) under ``runs_dir``,
    and a note for each unreadable one."""
    runs, problems = [], []
    for path, record in _read_all(runs_dir, results.RESULTS_JSON, results.read_deep_results,
                                  problems):
        if isinstance(record.get("members"), list) and record["members"]:
            runs.extend(member_runs(path.parent, record))
            continue
        train, test = read_curves(path.parent / results.METRICS_JSONL)
        runs.append(DeepRun(path.parent, record, train, test))
    return runs, problems


def member_runs(workdir: Path, record: results.DeepResults) -> list[DeepRun]:
    """An ensemble run's members as the runs of their seeds: the run's record with each
    member's seed, accuracy, loss and per-class figures, and the member's curves."""
    shared = {k: v for k, v in record.items() if k not in ("members", "ensemble")}
    runs = []
    for k, member in enumerate(record["members"]):
        train, test = read_curves(workdir / results.METRICS_JSONL, member=k)
        runs.append(DeepRun(workdir, {**shared, **member, "ensemble_member": k}, train, test))
    return runs


def find_incomplete(runs_dir: Path) -> list[dict]:
    """Runs without results.json: those the suite recorded (failed, interrupted or running),
    and workdirs holding only checkpoints (stopped before the end; rerun to resume)."""
    found = []
    for path in sorted(Path(runs_dir).rglob(results.CHECKPOINTS_DIR)):
        workdir = path.parent
        if (path.is_dir() and not (workdir / results.RESULTS_JSON).is_file()
                and not (workdir / results.SUITE_RECORD).is_file()):
            found.append({"workdir": str(workdir), "name": str(workdir.relative_to(runs_dir)),
                          "status": "unfinished",
                          "error": f"{results.CHECKPOINTS_DIR} but no {results.RESULTS_JSON}",
                          "log": ""})
    for path in sorted(Path(runs_dir).rglob(results.SUITE_RECORD)):
        if (path.parent / results.RESULTS_JSON).is_file():
            continue
        try:
            record = results.read_json(path)
        except (OSError, ValueError):
            record = {}
        found.append({"workdir": str(path.parent), "name": record.get("name", path.parent.name),
                      "status": record.get("status", "unknown"),
                      "error": record.get("error", ""), "log": record.get("log", "")})
    return found


def find_classical(runs_dir: Path) -> tuple[list[ClassicalResult], list[str]]:
    """Every classical grid (``classical_results.json``) under ``runs_dir``, and a note for
    each unreadable one or one that has only the older CSV / Markdown tables."""
    found, problems = [], []
    for path, summary in _read_all(runs_dir, results.CLASSICAL_JSON,
                                   results.read_classical_summary, problems):
        found.append(ClassicalResult(path.parent, summary["dataset"],
                                     is_synthetic(summary["dataset"], summary["synthetic"]),
                                     summary["rows"], summary["setup"]))
    for path in sorted(Path(runs_dir).rglob(results.CLASSICAL_CSV)):
        if not _skip(path.relative_to(runs_dir)) \
                and not (path.parent / results.CLASSICAL_JSON).is_file():
            problems.append(f"`{path}`: no {results.CLASSICAL_JSON} beside it (written by an "
                            "older version); rerun the grid's command, which reuses its "
                            f"{results.CLASSICAL_STORE}/, to add it")
    return found, problems
