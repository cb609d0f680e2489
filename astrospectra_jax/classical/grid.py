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
``astrospectra_jax.data.catalogue`` and writes ``classical_results.json`` / ``.csv`` / ``.md``
(``tables``). The store is ``store``; the killable child processes are ``isolation``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib
import inspect
import logging
import os
import re
import tempfile
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

from astrospectra_jax import paper, results
from astrospectra_jax.classical import isolation, store, tables
from astrospectra_jax.data import catalogue

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


# ----------------------------------------------------------------------------- one fit

def _summarise_warnings(caught) -> list[str]:
    counts = {}
    for w in caught:
        text = f"{w.category.__name__}: {str(w.message).strip().splitlines()[0][:160]}"
        counts[text] = counts.get(text, 0) + 1
    return [t if n == 1 else f"{t} (x{n})" for t, n in counts.items()]


def _unfinished(**fields) -> dict:
    """A fit's result before (or without) its scores."""
    return {"status": "failed", "accuracy": None, "fit_s": None, "fit_cpu_s": None,
            "predict_s": None, "error": "", "notes": [], **fields}


def _fit_and_score(task: dict, x_train, y_train, x_test, y_test) -> dict:
    """Fit one configuration and score it on the test split; never raises."""
    result = _unfinished()
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


def _evaluate(task: dict, data, budget_s: float, threads: int) -> dict:
    """Worker entry: one configuration, in a killable child process when a budget is set."""
    if budget_s <= 0:
        return {**task, **_fit_and_score(task, *data)}
    try:
        result = isolation.call(_fit_and_score, task, data, data_id=task["data_id"],
                                budget_s=budget_s, threads=threads)
    except isolation.BudgetExceeded as stopped:
        result = _unfinished(status="timeout", fit_s=stopped.elapsed_s,
                             error=f"exceeded the time budget of {budget_s:g} s; the fit was "
                                   "stopped")
    except isolation.ProcessDied as died:
        result = _unfinished(error=f"the fitting process died (exit code {died.exitcode})")
    return {**task, **result}


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
                client.run(isolation.close_sandboxes)
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
    data_id = store.fingerprint(*data)
    stored = store.read_store(store_dir) if store_dir.exists() else {}
    base = {"dataset": dataset, "fingerprint": data_id, "seed": int(seed),
            "n_train": len(data[1]), "n_test": len(data[3]), "sklearn": sklearn.__version__,
            "time_budget_s": float(time_budget_s), **dict(metadata or {})}

    records, pending = {}, []
    for row in rows:
        key = store.config_key(data_id, row.classifier, row.params, seed)
        if store.reusable(stored.get(key), time_budget_s, retry_failed):
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
                    stack.callback(isolation.close_sandboxes)
                outcomes = joblib.Parallel(return_as="generator_unordered", batch_size=1)(
                    joblib.delayed(_evaluate)(task, shared, float(time_budget_s), threads)
                    for task in pending)
                for result in outcomes:
                    record = {**base, **result,
                              "finished_at": datetime.datetime.now(datetime.timezone.utc)
                              .isoformat(timespec="seconds")}
                    record.pop("data_id", None)
                    store.write_record(store_dir, record)
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
            isolation.close_sandboxes()
    return [records[row.index] for row in rows]


# ----------------------------------------------------------------------------- entry point

def run(config, workdir) -> list[dict]:
    """Run the grid described by ``config`` (see configs/classical_*.py) on its dataset;
    write ``classical_results.json`` / ``.csv`` / ``.md`` in ``workdir`` and return their
    rows."""

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
    if spec.modality == "image":
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
        "time budget per configuration: "
        + (f"{config.time_budget_s:g} s" if config.time_budget_s > 0 else "none"),
    ]
    settings += tables.table_notes(name)

    records = run_grid(
        x_train, y_train, x_test, y_test, rows, store_dir=workdir / results.CLASSICAL_STORE,
        dataset=name,
        seed=int(config.seed), n_jobs=int(config.n_jobs), backend=config.backend,
        scheduler_address=config.get("scheduler_address", ""),
        time_budget_s=float(config.time_budget_s),
        retry_failed=bool(config.get("retry_failed", False)),
        metadata={"train_subsample": int(config.train_subsample), "synthetic": spec.synthetic})

    images = None
    if catalogue.is_line_dataset(name):
        dirs = [workdir / results.CLASSICAL_STORE]
        if config.get("image_workdir"):
            dirs.append(Path(config.image_workdir) / results.CLASSICAL_STORE)
        images = tables.image_records(name, dirs, seed=int(config.seed),
                                      train_subsample=int(config.train_subsample))
    table = tables.compare_with_paper(records, name, images)
    setup = {"n_train": len(y_train), "n_test": len(y_test),
             "train_subsample": int(config.train_subsample),
             "time_budget_s": float(config.time_budget_s), "seed": int(config.seed),
             "sklearn": sklearn.__version__}
    paths = tables.write_results(table, workdir, dataset=name, synthetic=spec.synthetic,
                                 setup=setup, settings=settings)
    log.info("wrote %s", ", ".join(map(str, paths)))
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
