"""What every stage writes and reads: file names, record types, one atomic write.

A deep run's workdir (``main.py``, ``training/train.py``) holds ``config.json`` (from the
start), ``results.json`` (a ``DeepResults``), ``metrics.jsonl`` (one ``MetricsLine`` per line), ``confusion_matrix.png``,
TensorBoard events and ``checkpoints/``; the suite adds ``suite_run.json`` (a ``SuiteRun``)
and ``train.log``. A classical grid's workdir holds ``classical_store/`` (one
``ClassicalRecord`` per configuration), ``classical_results.json`` (a ``ClassicalSummary``,
what the report reads) and the same table as ``classical_results.csv`` / ``.md`` for people.
The report writes ``report.json`` and ``report.md``.

Records are plain dicts (JSON objects); the ``TypedDict`` classes below document their keys.
Every file is written with ``write_text`` / ``write_json`` / ``atomic_open``: readers never see
half a file, and an interrupted write leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

# ----------------------------------------------------------------------------- file names

RESULTS_JSON = "results.json"
CONFIG_JSON = "config.json"  # the run's config, written when it starts (what predict reads)
METRICS_JSONL = "metrics.jsonl"
CONFUSION_PNG = "confusion_matrix.png"
CHECKPOINTS_DIR = "checkpoints"
SUITE_RECORD = "suite_run.json"
SUITE_LOG = "train.log"
CLASSICAL_STORE = "classical_store"
CLASSICAL_JSON = "classical_results.json"
CLASSICAL_CSV = "classical_results.csv"
CLASSICAL_MD = "classical_results.md"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


# ----------------------------------------------------------------------------- record types

class DeepResults(TypedDict, total=False):
    """``results.json`` of a deep run; ``DEEP_RESULTS_REQUIRED`` are always present."""
    dataset: str  # catalogue name, e.g. "astrospectra_mnist/v2_synthetic"
    data_source: str  # "tfds", or "in-memory arrays" (train_and_evaluate(splits=...))
    synthetic: bool  # simulated spectra
    model: str  # registry name, e.g. "resnet18"
    kernels: str  # "xla" or "cpu": the model's operations (config model.kernels, resolved)
    accuracy: float  # test accuracy (an ensemble's: of its members' averaged probabilities)
    test_loss: float
    macro_f1: float
    class_names: list[str]
    per_class: dict[str, dict[str, float]]  # name -> precision, recall, f1, support
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted
    steps: int
    epochs: float
    train_examples: int
    test_examples: int
    seed: int
    config: dict  # the run's ConfigDict as JSON
    devices: dict  # count, platform, kind, processes
    git_commit: str | None
    wall_time_s: float
    compile_time_s: float
    train_examples_per_s: float | None
    train_examples_per_s_per_device: float | None
    resumed_from_step: int | None
    # config.eval_datasets: dataset name or folder -> the classification report's keys plus
    # synthetic, split ("test" or "all"), examples, loss; or only "error"
    eval_datasets: dict[str, dict[str, Any]]
    member_examples_per_s: float | None  # train_examples_per_s x ensemble_size
    # An ensemble run (config.ensemble_size > 1) adds the following; the top-level accuracy,
    # test_loss, per_class, macro_f1 and confusion_matrix are then the ensemble's.
    ensemble_size: int
    member_axis: str  # "map" (lax.map), "vmap" or "mesh" (members on different devices)
    # one per member (seed = config.seed + k): seed, accuracy, test_loss, macro_f1,
    # class_names, per_class, confusion_matrix
    members: list[dict[str, Any]]
    accuracy_mean: float  # over the members
    accuracy_std: float  # over the members (ddof=1)
    ensemble: dict[str, Any]  # the averaged probabilities' accuracy, test_loss, per_class, ...


DEEP_RESULTS_REQUIRED = ("dataset", "model", "accuracy")


class MetricsLine(TypedDict, total=False):
    """One line of ``metrics.jsonl``: ``split`` ("train" or "test"), ``step``, ``time`` (Unix
    seconds) and the scalars logged (``loss``, ``accuracy``, ``epoch``, ...)."""
    split: str
    step: int
    time: float


class ClassicalRecord(TypedDict, total=False):
    """One finished configuration in ``classical_store/<classifier>-<key>.json``."""
    key: str  # hash of (data fingerprint, classifier, params, seed, scikit-learn version)
    row: int  # 0-based row of the paper's Table 1-1
    classifier: str
    params: dict
    seed: int
    dataset: str
    synthetic: bool
    fingerprint: str  # hash of the arrays fitted and scored
    n_train: int
    n_test: int
    train_subsample: int  # 0 = the whole training split
    time_budget_s: float  # 0 = none
    sklearn: str
    status: str  # "ok", "failed" or "timeout"
    accuracy: float | None
    fit_s: float | None
    fit_cpu_s: float | None
    predict_s: float | None
    error: str
    notes: list[str]
    finished_at: str  # ISO 8601, UTC


class ClassicalSummary(TypedDict):
    """``classical_results.json``: a grid's table against the paper, as the report reads it.

    ``rows`` hold ``classical.tables.CSV_COLUMNS`` (and ``LINE_CSV_COLUMNS`` for a line
    dataset) with numbers as numbers; ``setup`` holds ``n_train``, ``n_test``,
    ``train_subsample``, ``time_budget_s``, ``seed`` and ``sklearn``."""
    dataset: str
    synthetic: bool
    setup: dict[str, Any]
    settings: list[str]  # the features, split sizes and versions, in words
    rows: list[dict[str, Any]]


class SuiteRun(TypedDict, total=False):
    """``suite_run.json``: the suite's record of one run (written at start and at the end)."""
    name: str
    dataset: str
    model: str
    input_size: int
    seed: int  # the first seed of an ensemble run
    ensemble_size: int  # > 1: seeds seed .. seed + ensemble_size - 1 as one ensemble run
    command: list[str]
    log: str
    resumed: bool
    started_at: str
    finished_at: str
    status: str  # "running", "ok", "failed" or "interrupted"
    error: str
    returncode: int
    wall_s: float


# ----------------------------------------------------------------------------- writing

_umask_lock = threading.Lock()


def _umask() -> int:
    """The process's umask, read without changing it where Linux reports it."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    with _umask_lock:  # elsewhere: set and restore (not atomic against other threads)
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path`` (``mode`` "w" or "wb"), renamed over ``path``
    when the block ends; on an exception the temporary file is removed and ``path`` is left
    as it was. The file gets the mode a plain ``open`` would give (0o666 less the umask), not
    tempfile's 0o600. Missing parent folders are created."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        text = {"encoding": "utf-8", "newline": ""} if mode == "w" else {}
        with os.fdopen(fd, mode, **text) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    with atomic_open(path) as f:
        f.write(text)


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON atomically (non-JSON values as ``str``)."""
    write_text(path, json.dumps(payload, indent=2, default=str) + "\n")


# ----------------------------------------------------------------------------- reading

def read_json(path: str | Path) -> Any:
    """A JSON file's content; OSError or ValueError (with the path) when unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None


def read_deep_results(path: str | Path) -> DeepResults:
    """A ``results.json``; ValueError naming the file if it is no JSON object or lacks one of
    ``DEEP_RESULTS_REQUIRED``."""
    results = read_json(path)
    if not isinstance(results, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [k for k in DEEP_RESULTS_REQUIRED if k not in results]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
    return results


def read_classical_summary(path: str | Path) -> ClassicalSummary:
    """A ``classical_results.json``; ValueError naming the file if a field is missing."""
    summary = read_json(path)
    missing = [k for k in ClassicalSummary.__annotations__
               if not isinstance(summary, dict) or k not in summary]
    if missing:
        raise ValueError(f"{path}: missing field(s) {', '.join(missing)}")
    return summary


def read_metrics(path: str | Path) -> list[MetricsLine]:
    """The records of a ``metrics.jsonl`` in file order; unreadable lines (a write cut short)
    and a missing file give no records."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "split" in record and "step" in record:
            records.append(record)
    return records


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit checked out where ``path`` (default: this package) lies; None outside git."""
    import subprocess

    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(path or __file__).resolve().parent, timeout=10,
                                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
