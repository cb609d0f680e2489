"""The paper's classical grid: 89 scikit-learn configurations (Tables 1-1 and 1-2).

The rows come from the carried Table 1-1 (``astrospectra_jax/paper_tables``), in order, and are
the single source of truth: ``params_json`` are the estimator's keyword arguments. Where the
installed scikit-learn no longer takes a parameter the paper used, ``build_estimator`` keeps
its meaning and says so in the row's notes (LogisticRegression ``multi_class="ovr"`` becomes
``OneVsRestClassifier``, ``penalty="l2"`` becomes ``l1_ratio=0``, the deprecated
PassiveAggressiveClassifier becomes its documented ``SGDClassifier`` equivalent).

Features follow the paper: flattened images scaled to [0, 1], or the 721 line-vector values
as stored; no standardisation. Every finished configuration is written at once (atomically)
to ``workdir/classical_store/``, one JSON file per (dataset fingerprint, estimator, parameters,
seed, scikit-learn version), so an interrupted grid resumes where it stopped. With a time
budget, each fit runs in a child process that is killed when the budget is spent; the
configuration is recorded as ``timeout`` and the grid goes on.

``run_grid`` works on arrays (no TFDS needed); ``run(config, workdir)`` loads a dataset through
``astrospectra_jax.data.catalogue`` and writes ``classical_results.csv`` / ``classical_results.md``.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import hashlib
import importlib
import inspect
import io
import json
import logging
import multiprocessing
import os
import re
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.metrics import accuracy_score
from sklearn.model_selection import StratifiedShuffleSplit
from tqdm.auto import tqdm

from astrospectra_jax import paper
from astrospectra_jax.data import catalogue

STORE_DIR = "classical_store"
RESULTS_CSV = "classical_results.csv"
RESULTS_MD = "classical_results.md"
BACKENDS = ("loky", "dask")

ESTIMATOR_MODULES = {
    "DecisionTreeClassifier": "sklearn.tree",
    "ExtraTreeClassifier": "sklearn.tree",
    "GaussianNB": "sklearn.naive_bayes",
    "GradientBoostingClassifier": "sklearn.ensemble",
    "KNeighborsClassifier": "sklearn.neighbors",
    "LinearSVC": "sklearn.svm",
    "LogisticRegression": "sklearn.linear_model",
    "MLPClassifier": "sklearn.neural_network",
    "PassiveAggressiveClassifier": "sklearn.linear_model",
    "Perceptron": "sklearn.linear_model",
    "RandomForestClassifier": "sklearn.ensemble",
    "SGDClassifier": "sklearn.linear_model",
}

# Slow families are dispatched first, so that the longest fits do not start last.
_DISPATCH_RANK = {"GradientBoostingClassifier": 0, "RandomForestClassifier": 1,
                  "MLPClassifier": 2, "LinearSVC": 3, "KNeighborsClassifier": 4,
                  "LogisticRegression": 5}

# fit_cpu_s: CPU seconds of the fitting process, a steadier figure than fit_s on a shared
# machine (it counts other fits too where several share a process: Dask with no time budget).
CSV_COLUMNS = ("row", "classifier", "params", "accuracy", "paper_accuracy", "difference",
               "fit_s", "fit_cpu_s", "predict_s", "status", "notes")
LINE_CSV_COLUMNS = ("image_accuracy", "image_source", "line_minus_image",
                    "paper_image_accuracy", "paper_line_minus_image")

_SANDBOX_START_TIMEOUT_S = 600.0
_SKLEARN_VERSION = tuple(int(p) for p in re.findall(r"\d+", sklearn.__version__)[:2])

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the grid

@dataclasses.dataclass(frozen=True)
class GridRow:
    """One configuration of Table 1-1: ``index`` is its 0-based position in the table."""
    index: int
    classifier: str
    params: dict


def grid_rows() -> list[GridRow]:
    """The paper's 89 configurations, in Table 1-1's order."""
    return [GridRow(r["row"], r["classifier"], r["params"]) for r in paper.table1_1_classical()]


def _as_list(value) -> list:
    """A sequence or comma-separated text (``--config.classifiers=A,B`` arrives as ("A,B",))."""
    items = [value] if isinstance(value, (str, int)) else list(value or ())
    return [p.strip() if isinstance(p, str) else p for item in items
            for p in (item.split(",") if isinstance(item, str) else [item])
            if not isinstance(p, str) or p.strip()]


def select_rows(rows: Sequence[GridRow], *, classifiers=(), indices=()) -> list[GridRow]:
    """Rows whose classifier is in ``classifiers`` and index in ``indices`` (empty = all).

    Both accept a sequence or a comma-separated string; unknown names or indices raise a
    ValueError listing the known ones.
    """
    classifiers, indices = _as_list(classifiers), [int(i) for i in _as_list(indices)]
    known = sorted({r.classifier for r in rows})
    unknown = [c for c in classifiers if c not in known]
    if unknown:
        raise ValueError(f"config.classifiers: unknown {unknown}; known: {known}")
    known_indices = {r.index for r in rows}
    missing = [i for i in indices if i not in known_indices]
    if missing:
        raise ValueError(f"config.rows: no rows {missing}; rows are "
                         f"{min(known_indices)}..{max(known_indices)}")
    return [r for r in rows
            if (not classifiers or r.classifier in classifiers)
            and (not indices or r.index in indices)]


def _estimator_class(classifier: str):
    if classifier not in ESTIMATOR_MODULES:
        raise ValueError(f"unknown classifier {classifier!r}; known: {sorted(ESTIMATOR_MODULES)}")
    return getattr(importlib.import_module(ESTIMATOR_MODULES[classifier]), classifier)


def build_estimator(classifier: str, params: Mapping, *, n_classes: int, seed: int = 0):
    """The paper's configuration as an estimator of the installed scikit-learn.

    Returns ``(estimator, notes)``; ``notes`` say where a parameter the paper used was
    translated to keep its meaning. ``random_state=seed`` is set where the estimator takes
    one and the paper gave none. A parameter the estimator does not take raises ValueError.
    """
    params = dict(params)
    notes = []
    wrap_one_vs_rest = False
    if params.get("priors") == "uniform":
        params["priors"] = [1.0 / n_classes] * n_classes
    if "hidden_layer_sizes" in params:
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])

    if classifier == "PassiveAggressiveClassifier" and _SKLEARN_VERSION >= (1, 8):
        loss = params.pop("loss", "hinge")
        if loss != "hinge":
            raise ValueError(
                f"PassiveAggressiveClassifier loss={loss!r}: only 'hinge' is translated")
        classifier = "SGDClassifier"
        params = {"loss": "hinge", "penalty": None, "learning_rate": "pa1",
                  "eta0": params.pop("C", 1.0), **params}
        notes.append("PassiveAggressiveClassifier is deprecated since scikit-learn 1.8: "
                     f"SGDClassifier(loss='hinge', penalty=None, learning_rate='pa1', "
                     f"eta0=C={params['eta0']}), its documented equivalent")

    cls = _estimator_class(classifier)
    signature = inspect.signature(cls).parameters

    if classifier == "LogisticRegression":
        multi_class = params.get("multi_class")
        if multi_class is not None and "multi_class" not in signature:
            params.pop("multi_class")
            if multi_class == "ovr":
                wrap_one_vs_rest = True
                notes.append("LogisticRegression(multi_class='ovr') was removed from "
                             "scikit-learn: one binary LogisticRegression per class in "
                             "OneVsRestClassifier, the same model")
            elif multi_class != "multinomial":
                raise ValueError(
                    f"LogisticRegression multi_class={multi_class!r} is not translated")
        penalty = params.get("penalty")
        if penalty is not None and signature["penalty"].default == "deprecated":
            params.pop("penalty")
            if penalty == "l2":
                params["l1_ratio"] = 0.0
            elif penalty == "l1":
                params["l1_ratio"] = 1.0
            else:
                raise ValueError(f"LogisticRegression penalty={penalty!r} is not translated")
            notes.append(f"LogisticRegression penalty={penalty!r} is deprecated since "
                         f"scikit-learn 1.8: l1_ratio={params['l1_ratio']}, the same penalty")

    unknown = sorted(set(params) - set(signature))
    if unknown:
        raise ValueError(f"{classifier} of scikit-learn {sklearn.__version__} takes no "
                         f"parameter {unknown} (known: {sorted(signature)})")
    if "random_state" in signature and "random_state" not in params:
        params["random_state"] = seed
    estimator = cls(**params)
    if wrap_one_vs_rest:
        from sklearn.multiclass import OneVsRestClassifier
        estimator = OneVsRestClassifier(estimator)
    return estimator, notes


# ----------------------------------------------------------------------------- data

def features(x: np.ndarray) -> np.ndarray:
    """Estimator input: images (N, 28, 28[, 1]) uint8 -> (N, 784) float32 in [0, 1];
    line vectors (N, 721) -> float32 values as stored (no standardisation, as in the paper)."""
    x = np.asarray(x)
    flat = x.reshape(len(x), -1)
    if x.dtype == np.uint8:
        return flat.astype(np.float32) / np.float32(255.0)
    return flat.astype(np.float32, copy=False)


def subsample(x: np.ndarray, y: np.ndarray, n: int, seed: int):
    """A stratified, seeded subset of ``n`` examples in their original order (n <= 0 or
    n >= len(y): everything)."""
    if n <= 0 or n >= len(y):
        return x, y
    split = StratifiedShuffleSplit(n_splits=1, train_size=n, random_state=seed)
    index = np.sort(next(split.split(np.zeros(len(y)), y))[0])
    return x[index], y[index]


def fingerprint(*arrays: np.ndarray) -> str:
    """A hash of the arrays' shapes, dtypes and bytes: the data identity in the store."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()[:24]


# ----------------------------------------------------------------------------- one fit

def _summarise_warnings(caught) -> list[str]:
    counts = {}
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).strip().splitlines()[0][:160]}"
        counts[text] = counts.get(text, 0) + 1
    return [t if n == 1 else f"{t} (x{n})" for t, n in counts.items()]


def _fit_and_score(task: dict, x_train, y_train, x_test, y_test) -> dict:
    """Fit one configuration and score it on the test split; never raises."""
    result = {"status": "failed", "accuracy": None, "fit_s": None, "fit_cpu_s": None,
              "predict_s": None, "error": "", "notes": []}
    try:
        estimator, result["notes"] = build_estimator(
            task["classifier"], task["params"], n_classes=len(np.unique(y_train)),
            seed=task["seed"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start, cpu_start = time.perf_counter(), time.process_time()
            estimator.fit(x_train, y_train)
            result["fit_s"] = time.perf_counter() - start
            result["fit_cpu_s"] = time.process_time() - cpu_start
            start = time.perf_counter()
            predicted = estimator.predict(x_test)
            result["predict_s"] = time.perf_counter() - start
        result["notes"] = result["notes"] + _summarise_warnings(caught)
        result["accuracy"] = float(accuracy_score(y_test, predicted))
        result["status"] = "ok"
    except Exception as err:  # a configuration that fails is recorded; the grid goes on
        result["error"] = f"{type(err).__name__}: {err}".strip()[:2000]
    return result


# ----------------------------------------------------------------------------- killable fits

def _open_payload(payload):
    return tuple(np.load(a[1], mmap_mode="r") if isinstance(a, tuple) else a for a in payload)


def _exit_with_parent(lifeline) -> None:
    lifeline.poll(None)  # nothing is ever sent: this returns when the grid's end closes
    os._exit(1)  # the grid is gone (e.g. killed): stop fitting for nobody


def _sandbox_main(conn, lifeline, threads: int) -> None:
    """Child process: fit configurations sent over ``conn`` until told to stop."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    threading.Thread(target=_exit_with_parent, args=(lifeline,), daemon=True).start()
    conn.send("ready")
    arrays = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        task, payload = message
        if payload is not None:
            arrays = _open_payload(payload)
        conn.send(_fit_and_score(task, *arrays))


class _Sandbox:
    """A child process that fits one configuration at a time and can be killed.

    The data are sent once per sandbox (as .npy paths when they are memory-mapped files);
    a fit past its budget gets the process killed and the sandbox discarded.
    """

    def __init__(self, threads: int):
        # forkserver: one clean server process imports this module once, then each fitting
        # process is a cheap fork of it (safer than forking a process that runs threads).
        if "forkserver" in multiprocessing.get_all_start_methods():
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["__main__", __name__])
        else:
            context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        # Only this process holds the lifeline's sending end; the child exits when it closes.
        lifeline, self.lifeline = context.Pipe(duplex=False)
        self.process = context.Process(target=_sandbox_main, args=(child, lifeline, threads),
                                       name="classical-fit", daemon=True)
        self.process.start()
        child.close()
        lifeline.close()
        self.data_id = None
        self.busy = False
        try:
            ready = self.conn.poll(_SANDBOX_START_TIMEOUT_S) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.close()
            raise RuntimeError(
                f"a process to fit in did not start (exit code {self.process.exitcode}); a "
                "time budget needs child processes (run from a file with an "
                "`if __name__ == '__main__':` guard), or set time_budget_s=0")

    def evaluate(self, task: dict, data, budget_s: float) -> dict:
        payload = None
        if task["data_id"] != self.data_id:
            payload = tuple((("npy", a.filename) if isinstance(a, np.memmap) and a.filename
                             and os.path.exists(a.filename) else np.asarray(a)) for a in data)
        start = time.perf_counter()
        self.busy = True
        self.conn.send((task, payload))
        self.data_id = task["data_id"]
        if self.conn.poll(budget_s):
            try:
                result = self.conn.recv()
                self.busy = False
                return result
            except (EOFError, OSError):
                pass
            self.kill()
            return {"status": "failed", "accuracy": None, "fit_s": None, "predict_s": None,
                    "error": f"the fitting process died (exit code {self.process.exitcode})",
                    "notes": []}
        elapsed = time.perf_counter() - start
        self.kill()
        return {"status": "timeout", "accuracy": None, "fit_s": elapsed, "predict_s": None,
                "notes": [],
                "error": f"exceeded the time budget of {budget_s:g} s; the fit was stopped"}

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()
        self.lifeline.close()

    def close(self) -> None:
        """Stop the process: an idle one is asked to leave, a fitting one is killed."""
        if self.busy:
            self.kill()
            return
        with contextlib.suppress(OSError, ValueError):
            if self.process.is_alive():
                self.conn.send(None)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()
        self.lifeline.close()


_thread_sandbox = threading.local()
_sandboxes: list[_Sandbox] = []
_sandboxes_lock = threading.Lock()


def close_sandboxes() -> None:
    """Stop every fitting process this process started."""
    with _sandboxes_lock:
        sandboxes, _sandboxes[:] = list(_sandboxes), []
    for sandbox in sandboxes:
        sandbox.close()
    _thread_sandbox.__dict__.clear()


def _evaluate(task: dict, data, budget_s: float, threads: int) -> dict:
    """Worker entry: one configuration, in a killable child process when a budget is set."""
    if budget_s <= 0:
        result = _fit_and_score(task, *data)
    else:
        # A process that cannot start is no fault of the configuration: that error stops
        # the grid instead of being stored as the configuration's result.
        sandbox = getattr(_thread_sandbox, "sandbox", None)
        if sandbox is None or not sandbox.alive():
            sandbox = _thread_sandbox.sandbox = _Sandbox(threads)
            with _sandboxes_lock:
                _sandboxes.append(sandbox)
        result = sandbox.evaluate(task, data, budget_s)
    return {**task, **result}


# ----------------------------------------------------------------------------- the store

def _config_key(data_id: str, row: GridRow, seed: int) -> str:
    text = json.dumps({"data": data_id, "classifier": row.classifier, "params": row.params,
                       "seed": seed, "sklearn": sklearn.__version__}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _record_path(store_dir: Path, record: dict) -> Path:
    return Path(store_dir) / f"{record['classifier']}-{record['key']}.json"


def read_store(store_dir) -> dict[str, dict]:
    """Every record in a store folder, by key (unreadable files are skipped with a warning)."""
    records = {}
    for path in sorted(Path(store_dir).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            records[record["key"]] = record
        except (OSError, ValueError, KeyError) as err:
            log.warning("skipping unreadable result %s: %s", path, err)
    return records


def _reusable(record: dict | None, budget_s: float, retry_failed: bool) -> bool:
    if record is None:
        return False
    if record["status"] == "ok":
        return True
    if record["status"] == "failed":
        return not retry_failed
    # A timeout stands unless the budget has grown (or been lifted).
    return 0 < budget_s <= (record.get("time_budget_s") or 0)


# ----------------------------------------------------------------------------- running

@contextlib.contextmanager
def _parallel(backend: str, n_jobs: int, scheduler_address: str, sandboxed: bool):
    """joblib's parallel configuration; yields (number of workers, workers are local)."""
    if backend == "loky":
        workers = joblib.effective_n_jobs(n_jobs)
        # With a time budget the fits run in killable child processes, so joblib only
        # has to drive them: threads are enough.
        with joblib.parallel_config(backend="threading" if sandboxed else "loky", n_jobs=workers):
            yield workers, True
        return
    if backend != "dask":
        raise ValueError(f"config.backend: unknown {backend!r}; known: {BACKENDS}")
    from dask.distributed import Client, LocalCluster
    cluster = None
    if scheduler_address:
        client = Client(scheduler_address)
    else:
        threads = joblib.effective_n_jobs(n_jobs)
        # In-process workers talk over inproc://: no port is opened.
        cluster = LocalCluster(n_workers=1, threads_per_worker=threads, processes=False,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        workers = sum(client.nthreads().values())
        with joblib.parallel_config(backend="dask", n_jobs=-1):
            yield workers, cluster is not None
    finally:
        if sandboxed and cluster is None:
            with contextlib.suppress(Exception):
                client.run(close_sandboxes)
        client.close()
        if cluster is not None:
            cluster.close()


def _memory_mapped(arrays, folder: str):
    mapped = []
    for i, a in enumerate(arrays):
        path = os.path.join(folder, f"array{i}.npy")
        np.save(path, np.ascontiguousarray(a))
        mapped.append(np.load(path, mmap_mode="r"))
    return tuple(mapped)


def run_grid(x_train, y_train, x_test, y_test, rows: Sequence[GridRow], *, store_dir,
             dataset: str = "arrays", seed: int = 0, n_jobs: int = -1, backend: str = "loky",
             scheduler_address: str = "", time_budget_s: float = 0.0,
             retry_failed: bool = False, metadata: Mapping | None = None,
             progress: bool = True) -> list[dict]:
    """Fit and score ``rows`` on 2-D feature arrays; one record per row, in ``rows``' order.

    Records already in ``store_dir`` for the same data, configuration, seed and scikit-learn
    version are reused (``reused: True``); the others run in parallel (joblib, all cores for
    ``n_jobs=-1``; ``backend="dask"`` on a dask.distributed cluster at ``scheduler_address``
    or a local one) and are stored one by one as they finish. ``time_budget_s > 0`` bounds
    each fit (status ``timeout``); a configuration that raises is recorded as ``failed``.
    Failed records are reused unless ``retry_failed``; timeouts unless the budget grew.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: unknown {backend!r}; known: {BACKENDS}")
    data = tuple(np.asarray(a) for a in (x_train, y_train, x_test, y_test))
    if data[0].ndim != 2 or data[2].ndim != 2:
        raise ValueError(f"run_grid needs 2-D features, got {data[0].shape} and {data[2].shape}")
    store_dir = Path(store_dir)
    data_id = fingerprint(*data)
    stored = read_store(store_dir) if store_dir.exists() else {}
    base = {"dataset": dataset, "fingerprint": data_id, "seed": int(seed),
            "n_train": len(data[1]), "n_test": len(data[3]), "sklearn": sklearn.__version__,
            "time_budget_s": float(time_budget_s), **dict(metadata or {})}

    records, pending = {}, []
    for row in rows:
        key = _config_key(data_id, row, seed)
        if _reusable(stored.get(key), time_budget_s, retry_failed):
            records[row.index] = {**stored[key], "row": row.index, "reused": True}
        else:
            pending.append({"row": row.index, "classifier": row.classifier, "params": row.params,
                            "seed": int(seed), "key": key, "data_id": data_id})
    pending.sort(key=lambda t: (_DISPATCH_RANK.get(t["classifier"], 9),
                                -t["params"].get("n_estimators", 0), t["row"]))

    counts = {"done": len(records), "failed": 0, "timeout": 0}
    counts["failed"] = sum(r["status"] == "failed" for r in records.values())
    counts["timeout"] = sum(r["status"] == "timeout" for r in records.values())
    bar = tqdm(total=len(rows), initial=len(records), unit="config", dynamic_ncols=True,
               desc=f"classical {dataset}", disable=not progress)
    sandboxed = time_budget_s > 0
    try:
        if pending:
            with contextlib.ExitStack() as stack:
                workers, local = stack.enter_context(
                    _parallel(backend, n_jobs, scheduler_address, sandboxed))
                threads = max(1, joblib.cpu_count() // workers) if local else 1
                shared = data
                if sandboxed and local:
                    folder = stack.enter_context(
                        tempfile.TemporaryDirectory(prefix="astrospectra_classical_"))
                    shared = _memory_mapped(data, folder)
                if sandboxed:
                    # Runs first on the way out, also on Ctrl-C: joblib's threads wait on
                    # the fitting processes, so those must go before joblib shuts down.
                    stack.callback(close_sandboxes)
                results = joblib.Parallel(return_as="generator_unordered", batch_size=1)(
                    joblib.delayed(_evaluate)(task, shared, float(time_budget_s), threads)
                    for task in pending)
                for result in results:
                    record = {**base, **result,
                              "finished_at": datetime.datetime.now(datetime.timezone.utc)
                              .isoformat(timespec="seconds")}
                    record.pop("data_id", None)
                    _write_json_atomic(_record_path(store_dir, record), record)
                    records[record["row"]] = {**record, "reused": False}
                    counts["done"] += 1
                    counts[record["status"]] = counts.get(record["status"], 0) + 1
                    bar.set_postfix(done=counts["done"],
                                    running=min(workers, len(rows) - counts["done"]),
                                    failed=counts["failed"], timeout=counts["timeout"],
                                    refresh=False)
                    bar.update(1)
                    if record["status"] != "ok":
                        log.warning("row %d %s %s: %s", record["row"], record["classifier"],
                                    record["status"], record["error"])
    finally:
        bar.close()
        if sandboxed:
            close_sandboxes()
    return [records[row.index] for row in rows]


# ----------------------------------------------------------------------------- against the paper

def _fmt(value, digits=3):
    return "" if value is None else f"{value:.{digits}f}"


def _signed(value):
    return "" if value is None else f"{value:+.3f}"


def _paper_or_empty(getter, dataset):
    try:
        return getter(dataset)
    except ValueError:
        return {}


def image_records(line_dataset: str, store_dirs: Sequence, *, seed: int,
                  train_subsample: int) -> dict[str, dict]:
    """Our finished image-grid records for the objects of ``line_dataset`` (by
    ``paper.params_key``), from the given store folders; the latest wins."""
    image_dataset = paper.image_dataset_for(line_dataset)
    found = {}
    for folder in store_dirs:
        if not Path(folder).is_dir():
            continue
        for record in read_store(folder).values():
            if (record.get("dataset") == image_dataset and record["status"] == "ok"
                    and record.get("seed") == seed
                    and record.get("train_subsample", 0) == train_subsample):
                key = paper.params_key(record["classifier"], record["params"])
                if key not in found or record["finished_at"] > found[key]["finished_at"]:
                    found[key] = record
    return found


def compare_with_paper(records: Sequence[dict], dataset: str,
                       images: Mapping[str, dict] | None = None) -> list[dict]:
    """Result rows (``CSV_COLUMNS``, plus ``LINE_CSV_COLUMNS`` for a line dataset): ours,
    the paper's accuracy for ``dataset`` and the difference; for the line vectors, the image
    accuracy on the same objects (ours from ``images`` where present, else the paper's)."""
    published = _paper_or_empty(paper.classical_accuracy, dataset)
    line = catalogue.is_line_dataset(dataset)
    published_image = paper.line_image_accuracy(dataset) if line else {}
    rows = []
    for record in records:
        key = paper.params_key(record["classifier"], record["params"])
        ours, theirs = record.get("accuracy"), published.get(key)
        notes = list(record.get("notes", []))
        if record.get("error"):
            notes.insert(0, record["error"])
        row = {"row": record["row"], "classifier": record["classifier"],
               "params": json.dumps(record["params"]), "accuracy": ours,
               "paper_accuracy": theirs,
               "difference": None if ours is None or theirs is None else ours - theirs,
               "fit_s": record.get("fit_s"), "fit_cpu_s": record.get("fit_cpu_s"),
               "predict_s": record.get("predict_s"),
               "status": record["status"], "notes": "; ".join(notes)}
        if line:
            image = (images or {}).get(key)
            image_accuracy = image["accuracy"] if image else published_image.get(key)
            paper_image = published_image.get(key)
            row.update(
                image_accuracy=image_accuracy, image_source="ours" if image else "paper",
                line_minus_image=None if ours is None or image_accuracy is None
                else ours - image_accuracy,
                paper_image_accuracy=paper_image,
                paper_line_minus_image=None if theirs is None or paper_image is None
                else theirs - paper_image)
        rows.append(row)
    return rows


def _csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: ("" if row.get(c) is None else
                             round(row[c], 6) if isinstance(row[c], float) else row[c])
                         for c in columns})
    return out.getvalue()


def _md_cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], body: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in body]
    return lines


def family_summary(rows: Sequence[dict]) -> list[dict]:
    """Per classifier: our best accuracy, the paper's best, and the difference."""
    summary = {}
    for row in rows:
        s = summary.setdefault(row["classifier"], {"classifier": row["classifier"],
                                                   "ours": None, "paper": None})
        if row["accuracy"] is not None:
            s["ours"] = max(s["ours"] or 0.0, row["accuracy"])
        if row["paper_accuracy"] is not None:
            s["paper"] = max(s["paper"] or 0.0, row["paper_accuracy"])
    for s in summary.values():
        known = s["ours"] is not None and s["paper"] is not None
        s["difference"] = s["ours"] - s["paper"] if known else None
    return sorted(summary.values(), key=lambda s: -(s["ours"] or 0.0))


def _markdown(rows: Sequence[dict], *, dataset: str, synthetic: bool,
              settings: Sequence[str]) -> str:
    line = catalogue.is_line_dataset(dataset)
    lines = [f"# Classical grid (paper Table {'1-2' if line else '1-1'}) on {dataset}", ""]
    if synthetic:
        lines += [f"> **SYNTHETIC DATA: `{dataset}` holds simulated spectra, not LAMOST "
                  "observations. The paper's accuracies are shown for reference only; the "
                  "differences below are not a reproduction of the paper.**", ""]
    status = {s: sum(r["status"] == s for r in rows) for s in ("ok", "failed", "timeout")}
    fit = sum(r["fit_s"] or 0.0 for r in rows)
    diffs = [r["difference"] for r in rows if r["difference"] is not None]
    lines += [f"- configurations: {len(rows)} ({status['ok']} ok, {status['failed']} failed, "
              f"{status['timeout']} timeout); total fit time {fit:.0f} s"]
    if diffs:
        lines.append(f"- ours minus paper: mean {np.mean(diffs):+.3f}, "
                     f"ours higher in {sum(d > 0 for d in diffs)} of {len(diffs)}")
    lines += [f"- {s}" for s in settings] + ["", "## Best per classifier", ""]
    lines += _md_table(("classifier", "ours (best)", "paper (best)", "difference"),
                       [(s["classifier"], _fmt(s["ours"]), _fmt(s["paper"]),
                         _signed(s["difference"]))
                        for s in family_summary(rows)])
    lines += ["", "## All configurations", ""]
    lines += _md_table(
        ("row", "classifier", "parameters", "ours", "paper", "difference", "fit s",
         "predict s", "status", "notes"),
        [(r["row"], r["classifier"], r["params"], _fmt(r["accuracy"]),
          _fmt(r["paper_accuracy"]),
          _signed(r["difference"]),
          _fmt(r["fit_s"], 1), _fmt(r["predict_s"], 2), r["status"], r["notes"])
         for r in rows])
    if line:
        image_dataset = paper.image_dataset_for(dataset)
        ours_images = sum(r["image_source"] == "ours" for r in rows)
        lines += ["", f"## Line vectors against images of the same objects (Table 1-2)", "",
                  f"Image accuracy: ours on `{image_dataset}` for {ours_images} of "
                  f"{len(rows)} rows, the paper's Table 1-2 image column for the rest.", ""]
        lines += _md_table(
            ("row", "classifier", "parameters", "line (ours)", "image", "image from",
             "line - image", "paper line", "paper image", "paper line - image"),
            [(r["row"], r["classifier"], r["params"], _fmt(r["accuracy"]),
              _fmt(r["image_accuracy"]), r["image_source"],
              _signed(r["line_minus_image"]),
              _fmt(r["paper_accuracy"]), _fmt(r["paper_image_accuracy"]),
              _signed(r["paper_line_minus_image"]))
             for r in rows])
    return "\n".join(lines) + "\n"


def write_results(rows: Sequence[dict], workdir, *, dataset: str, synthetic: bool,
                  settings: Sequence[str] = ()) -> tuple[Path, Path]:
    """Write ``classical_results.csv`` and ``classical_results.md`` (atomically)."""
    workdir = Path(workdir)
    columns = CSV_COLUMNS + (LINE_CSV_COLUMNS if catalogue.is_line_dataset(dataset) else ())
    csv_path, md_path = workdir / RESULTS_CSV, workdir / RESULTS_MD
    _write_text_atomic(csv_path, _csv_text(rows, columns))
    _write_text_atomic(md_path, _markdown(rows, dataset=dataset, synthetic=synthetic,
                                          settings=settings))
    return csv_path, md_path


def _table_notes(dataset: str) -> list[str]:
    """Where Table 1-2's image column disagrees with Table 1-1 for the same configuration."""
    if not catalogue.is_line_dataset(dataset):
        return []
    column = paper.paper_column(paper.image_dataset_for(dataset))
    t11 = {paper.params_key(r["classifier"], r["params"]): r for r in paper.table1_1_classical()}
    notes = []
    for r in paper.table1_2_line_vs_images():
        other = t11[paper.params_key(r["classifier"], r["params"])]
        if other[column] != r[column]:
            notes.append(f"the paper gives row {other['row']} ({r['classifier']} {r['params']}) "
                         f"{r[column]:.3f} on {column} in Table 1-2 but {other[column]:.3f} in "
                         "Table 1-1; the image column here uses Table 1-2")
    return notes


# ----------------------------------------------------------------------------- entry point

def run(config, workdir) -> list[dict]:
    """Run the grid described by ``config`` (see configs/classical_*.py) on its dataset;
    write ``classical_results.csv`` / ``.md`` in ``workdir`` and return their rows."""

    if config.get("kind") != "classical":
        raise ValueError(f"config.kind must be 'classical', got {config.get('kind')!r}")
    if config.backend not in BACKENDS:
        raise ValueError(f"config.backend: unknown {config.backend!r}; known: {BACKENDS}")
    workdir = Path(workdir)
    name = config.dataset
    spec = catalogue.info(name)
    data_dir = config.get("data_dir") or None
    x_train, y_train = catalogue.load_arrays(name, "train", data_dir=data_dir)
    x_test, y_test = catalogue.load_arrays(name, "test", data_dir=data_dir)
    n_full = len(y_train)
    x_train, x_test = features(x_train), features(x_test)
    x_train, y_train = subsample(x_train, y_train, int(config.train_subsample), int(config.seed))
    rows = select_rows(grid_rows(), classifiers=config.get("classifiers", ()),
                       indices=config.get("rows", ()))

    settings = []
    if spec.kind == "image":
        settings.append("features: images flattened to "
                        f"{x_train.shape[1]} values scaled to [0, 1] (pixel / 255), float32; "
                        "no standardisation (the paper's setting)")
    else:
        settings.append(f"features: the {x_train.shape[1]} line-vector values as stored "
                        "(float32), no scaling or standardisation (the paper's setting)")
    settings += [
        f"train: {len(y_train)} of {n_full} examples"
        + (f" (stratified subsample, seed {config.seed})" if len(y_train) < n_full else "")
        + f"; test: the published test split, {len(y_test)} examples",
        f"scikit-learn {sklearn.__version__}; random_state={config.seed} for every estimator "
        "that takes one (the paper gives none)",
        "LinearSVC uses dual='auto' (scikit-learn's default since 1.5, dual=True before): "
        "the same objective, possibly another solver",
        f"time budget per configuration: "
        + (f"{config.time_budget_s:g} s" if config.time_budget_s > 0 else "none"),
    ]
    settings += _table_notes(name)

    records = run_grid(
        x_train, y_train, x_test, y_test, rows, store_dir=workdir / STORE_DIR, dataset=name,
        seed=int(config.seed), n_jobs=int(config.n_jobs), backend=config.backend,
        scheduler_address=config.get("scheduler_address", ""),
        time_budget_s=float(config.time_budget_s),
        retry_failed=bool(config.get("retry_failed", False)),
        metadata={"train_subsample": int(config.train_subsample), "synthetic": spec.synthetic})

    images = None
    if catalogue.is_line_dataset(name):
        dirs = [workdir / STORE_DIR]
        if config.get("image_workdir"):
            dirs.append(Path(config.image_workdir) / STORE_DIR)
        images = image_records(name, dirs, seed=int(config.seed),
                               train_subsample=int(config.train_subsample))
    table = compare_with_paper(records, name, images)
    csv_path, md_path = write_results(table, workdir, dataset=name, synthetic=spec.synthetic,
                                      settings=settings)
    log.info("wrote %s and %s", csv_path, md_path)
    return table


def base_config():
    """Defaults shared by configs/classical_*.py."""
    import ml_collections

    config = ml_collections.ConfigDict()
    config.kind = "classical"
    config.dataset = "astrospectra_mnist/v1"
    config.data_dir = ""  # "" = the TFDS default (~/tensorflow_datasets)
    config.classifiers = ()  # class names to keep, e.g. ("RandomForestClassifier",); () = all
    config.rows = ()  # Table 1-1 row indices (0-based) to keep; () = all 89
    config.train_subsample = 0  # 0 = the whole training split; else a stratified subset
    config.seed = 0
    config.n_jobs = -1  # -1 = all cores (or all Dask worker threads)
    config.backend = "loky"  # "loky" (this machine) or "dask"
    config.scheduler_address = ""  # Dask scheduler; "" = a LocalCluster on 127.0.0.1
    config.time_budget_s = 3600.0  # per configuration; 0 = no limit
    config.retry_failed = False  # re-run configurations recorded as failed
    config.image_workdir = ""  # line datasets: workdir of the matching image grid
    return config
