"""The classical grid on tiny random data: the paper's 89 rows, backends, resume, failures."""

from __future__ import annotations

import csv
import importlib.util
import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.multiclass import OneVsRestClassifier

from astrospectra_jax import paper, results
from astrospectra_jax.classical import grid, store, tables

REPO = Path(__file__).resolve().parents[1]
# Runs for minutes on tiny data: the stand-in for a configuration that outlives its budget.
SLOW_ROW = grid.GridRow(200, "SGDClassifier", {"max_iter": 10**9, "tol": None})
BAD_ROW = grid.GridRow(201, "KNeighborsClassifier", {"n_neighbors": 0})


def tiny_data(n_train=90, n_test=45, n_features=12, seed=0):
    """Three classes separated along the first features, plus noise."""
    rng = np.random.default_rng(seed)

    def split(n):
        y = np.arange(n, dtype=np.int32) % 3
        x = rng.normal(size=(n, n_features)).astype(np.float32)
        x[:, :3] += 2.5 * np.eye(3, dtype=np.float32)[y]
        return x, y

    return (*split(n_train), *split(n_test))


def tiny_images(n, seed):
    """(n, 28, 28, 1) uint8 images whose brightness pattern depends on the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int32) % 3
    x = rng.integers(0, 60, size=(n, 28, 28, 1))
    for label in range(3):
        x[y == label, 9 * label:9 * label + 9] += 150
    return x.astype(np.uint8), y


def test_the_grid_is_the_papers_89_rows():
    rows = grid.grid_rows()
    assert len(rows) == 89
    assert [(r.index, r.classifier, r.params) for r in rows] == \
        [(p["row"], p["classifier"], p["params"]) for p in paper.table1_1_classical()]


def test_every_row_builds_an_estimator_of_installed_sklearn():
    for row in grid.grid_rows():
        estimator, notes = grid.build_estimator(row.classifier, row.params, n_classes=3,
                                                     seed=7)
        got = estimator.get_params()
        if row.classifier == "LogisticRegression":
            assert isinstance(estimator, OneVsRestClassifier)
            inner = estimator.estimator
            assert (inner.C, inner.l1_ratio) == (100, 0.0)
            assert any("OneVsRestClassifier" in n for n in notes)
        elif row.classifier == "PassiveAggressiveClassifier":
            assert isinstance(estimator, SGDClassifier)
            assert (estimator.loss, estimator.learning_rate, estimator.eta0, estimator.penalty) \
                == ("hinge", "pa1", row.params["C"], None)
            assert notes
        else:
            assert type(estimator).__name__ == row.classifier
            assert not notes
            for name, value in row.params.items():
                expected = {"uniform": [1 / 3] * 3}.get(value, value) if name == "priors" \
                    else tuple(value) if isinstance(value, list) else value
                assert got[name] == expected, (row, name)
        if "random_state" in got:
            assert got["random_state"] == 7


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match="takes no parameter.*bogus"):
        grid.build_estimator("SGDClassifier", {"bogus": 1}, n_classes=3)
    with pytest.raises(ValueError, match="unknown classifier"):
        grid.build_estimator("SVC", {}, n_classes=3)


def test_all_89_fit_on_tiny_data_and_rerun_from_the_store(tmp_path):
    data = tiny_data()
    rows = grid.grid_rows()
    records = grid.run_grid(*data, rows, store_dir=tmp_path, n_jobs=1, progress=False)
    assert [r["row"] for r in records] == list(range(89))
    assert [r["status"] for r in records] == ["ok"] * 89, [r["error"] for r in records]
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["fit_s"] >= 0 for r in records)
    assert not any(r["reused"] for r in records)
    assert max(r["accuracy"] for r in records) > 0.8  # the classes are separable
    assert len(list(tmp_path.glob("*.json"))) == 89

    start = time.perf_counter()
    again = grid.run_grid(*data, rows, store_dir=tmp_path, n_jobs=1, progress=False)
    assert time.perf_counter() - start < 5
    assert all(r["reused"] for r in again)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in records]

    # Other data is another fingerprint: nothing is reused.
    other = grid.run_grid(*tiny_data(seed=1), rows[:2], store_dir=tmp_path, n_jobs=1,
                               progress=False)
    assert not any(r["reused"] for r in other)


def test_local_backend_records_failures_and_timeouts_and_goes_on(tmp_path):
    data = tiny_data()
    rows = grid.grid_rows()[:2] + [BAD_ROW, grid.grid_rows()[29], SLOW_ROW]
    start = time.perf_counter()
    records = grid.run_grid(*data, rows, store_dir=tmp_path, n_jobs=2,
                                 time_budget_s=3.0, progress=False)
    by_row = {r["row"]: r for r in records}
    assert [by_row[i]["status"] for i in (0, 1, 29)] == ["ok"] * 3
    assert by_row[BAD_ROW.index]["status"] == "failed"
    assert "n_neighbors" in by_row[BAD_ROW.index]["error"]
    assert by_row[SLOW_ROW.index]["status"] == "timeout"
    assert 3.0 <= by_row[SLOW_ROW.index]["fit_s"] < 10.0
    assert "time budget" in by_row[SLOW_ROW.index]["error"]
    assert time.perf_counter() - start < 45
    assert multiprocessing.active_children() == []  # the fitting processes are gone
    stored = {r["row"]: r for r in store.read_store(tmp_path).values()}
    assert stored[SLOW_ROW.index]["status"] == "timeout"
    assert stored[BAD_ROW.index]["status"] == "failed"

    # Same budget: both outcomes stand. retry_failed re-runs the failure only.
    again = grid.run_grid(*data, rows, store_dir=tmp_path, n_jobs=2, time_budget_s=3.0,
                               retry_failed=True, progress=False)
    assert [r["reused"] for r in again] == [True, True, False, True, True]


def test_dask_backend_gives_the_local_results(tmp_path):
    data = tiny_data()
    rows = [grid.grid_rows()[i] for i in (0, 24, 56, 75)]
    local = grid.run_grid(*data, rows, store_dir=tmp_path / "local", n_jobs=1,
                               progress=False)
    dask = grid.run_grid(*data, rows, store_dir=tmp_path / "dask", n_jobs=2,
                              backend="dask", time_budget_s=30.0, progress=False)
    assert [r["status"] for r in dask] == ["ok"] * 4
    assert [r["accuracy"] for r in dask] == [r["accuracy"] for r in local]
    assert len(list((tmp_path / "dask").glob("*.json"))) == 4
    assert multiprocessing.active_children() == []


def test_a_killed_grid_resumes_with_the_missing_configurations(tmp_path):
    psutil = pytest.importorskip("psutil")
    store_dir = tmp_path / "store"
    script = tmp_path / "grid.py"
    script.write_text(textwrap.dedent(f"""
        from astrospectra_jax.classical import grid
        from tests.test_classical import SLOW_ROW, tiny_data

        if __name__ == "__main__":
            rows = grid.grid_rows()[:2] + [SLOW_ROW]
            grid.run_grid(*tiny_data(), rows, store_dir={str(store_dir)!r}, n_jobs=1,
                          time_budget_s=600, progress=False)
    """))
    process = subprocess.Popen([sys.executable, str(script)], cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while len(list(store_dir.glob("*.json"))) < 2:
            assert process.poll() is None, "the grid stopped by itself"
            assert time.monotonic() < deadline, "the first configurations never finished"
            time.sleep(0.1)
        time.sleep(0.5)
        assert process.poll() is None  # still inside the slow configuration
        helpers = psutil.Process(process.pid).children(recursive=True)
        assert any("classical" in " ".join(p.cmdline()) for p in helpers)  # the fitting process
    finally:
        process.kill()
        process.wait()
    # The fitting processes stop with the grid instead of fitting on for nobody.
    _, alive = psutil.wait_procs(helpers, timeout=15)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    before = {p.name: p.stat().st_mtime_ns for p in store_dir.glob("*.json")}
    assert len(before) == 2 and not list(store_dir.glob("*.tmp"))

    rows = grid.grid_rows()[:3]
    records = grid.run_grid(*tiny_data(), rows, store_dir=store_dir, n_jobs=1, progress=False)
    assert [r["reused"] for r in records] == [True, True, False]
    assert all(r["status"] == "ok" for r in records)
    after = {p.name: p.stat().st_mtime_ns for p in store_dir.glob("*.json")}
    assert len(after) == 3 and all(after[name] == t for name, t in before.items())


def test_run_writes_results_against_the_paper(tmp_path, monkeypatch):
    from astrospectra_jax.data import catalogue

    arrays = {("astrospectra_mnist/v1_synthetic", "train"): tiny_images(90, 0),
              ("astrospectra_mnist/v1_synthetic", "test"): tiny_images(30, 1),
              ("line_astro_spectra/v1_synthetic", "train"): tiny_data(90, 30, 721)[:2],
              ("line_astro_spectra/v1_synthetic", "test"): tiny_data(90, 30, 721)[2:]}
    monkeypatch.setattr(catalogue, "load_arrays",
                        lambda name, split, data_dir=None: arrays[(name, split)])

    config = grid.base_config()
    config.dataset = "astrospectra_mnist/v1_synthetic"
    config.rows = (0, 24)
    config.n_jobs = 1
    config.time_budget_s = 0.0
    images = grid.run(config, tmp_path / "images")
    with open(tmp_path / "images" / results.CLASSICAL_CSV, newline="") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == tables.CSV_COLUMNS
    assert [int(r["row"]) for r in table] == [0, 24]
    assert float(table[0]["paper_accuracy"]) == 0.778
    assert float(table[0]["difference"]) == pytest.approx(images[0]["accuracy"] - 0.778, abs=1e-5)
    assert json.loads(table[1]["params"]) == {"priors": "uniform"}
    md = (tmp_path / "images" / results.CLASSICAL_MD).read_text()
    assert "SYNTHETIC DATA" in md and "Table 1-1" in md and "GaussianNB" in md
    summary = results.read_classical_summary(tmp_path / "images" / results.CLASSICAL_JSON)
    assert summary["dataset"] == "astrospectra_mnist/v1_synthetic" and summary["synthetic"]
    assert summary["rows"][0]["accuracy"] == images[0]["accuracy"]  # numbers, not text
    assert summary["setup"]["n_train"] == 90 and summary["setup"]["train_subsample"] == 0

    config.dataset = "line_astro_spectra/v1_synthetic"
    config.rows = (0, 1)
    config.image_workdir = str(tmp_path / "images")
    line = grid.run(config, tmp_path / "line")
    with open(tmp_path / "line" / results.CLASSICAL_CSV, newline="") as f:
        table = list(csv.DictReader(f))
    assert tuple(table[0]) == tables.CSV_COLUMNS + tables.LINE_CSV_COLUMNS
    assert [r["image_source"] for r in table] == ["ours", "paper"]
    assert float(table[0]["image_accuracy"]) == pytest.approx(images[0]["accuracy"])
    assert float(table[1]["image_accuracy"]) == 0.774  # Table 1-2's image column
    assert [float(r["paper_accuracy"]) for r in table] == [0.795, 0.779]
    assert line[0]["line_minus_image"] == pytest.approx(line[0]["accuracy"]
                                                        - images[0]["accuracy"])
    md = (tmp_path / "line" / results.CLASSICAL_MD).read_text()
    assert "SYNTHETIC DATA" in md and "Line vectors against images" in md

    config.backend = "spark"
    with pytest.raises(ValueError, match="config.backend"):
        grid.run(config, tmp_path / "bad")


def test_features_and_subsample():
    images, labels = tiny_images(30, 0)
    x = grid.features(images)
    assert x.shape == (30, 784) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0 and x.max() > 0.5
    spectra = np.full((4, 721), 1234.5, np.float32)
    assert np.array_equal(grid.features(spectra), spectra)  # raw, as the paper

    x, y = tiny_data(300)[:2]
    xs, ys = grid.subsample(x, y, 60, seed=3)
    assert len(ys) == 60 and np.bincount(ys).tolist() == [20, 20, 20]
    again = grid.subsample(x, y, 60, seed=3)[0]
    assert np.array_equal(xs, again)
    assert not np.array_equal(xs, grid.subsample(x, y, 60, seed=4)[0])
    assert grid.subsample(x, y, 0, seed=3)[0] is x


def test_row_selection():
    rows = grid.grid_rows()
    forests = grid.select_rows(rows, classifiers=("RandomForestClassifier,GaussianNB",))
    assert {r.classifier for r in forests} == {"RandomForestClassifier", "GaussianNB"}
    assert len(forests) == 19
    assert [r.index for r in grid.select_rows(rows, indices="3, 5")] == [3, 5]
    with pytest.raises(ValueError, match="config.classifiers"):
        grid.select_rows(rows, classifiers=("SVC",))
    with pytest.raises(ValueError, match="config.rows"):
        grid.select_rows(rows, indices=(89,))


@pytest.mark.parametrize("name", ["classical_v1", "classical_v2", "classical_line_v1",
                                  "classical_line_v2"])
def test_configs(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    assert config.kind == "classical"
    assert module.__doc__.startswith(f"python main.py --config=configs/{name}.py --workdir=")
    assert f"--config.dataset={config.dataset}_synthetic" in module.__doc__
    assert "Runtime and accuracy: see docs/reproduce.md" in module.__doc__
    assert paper.paper_column(config.dataset)
    assert config.backend in grid.BACKENDS and config.time_budget_s > 0
