"""The reproduction report: our results beside the paper's tables, as Markdown with PNGs.

    python -m astrospectra_jax.report --runs runs/ --out runs/report [--data-dir DIR]
        [--no-embeddings] [--max-points 2000]

Reads every deep run under ``--runs`` (a folder holding ``results.json`` and ``metrics.jsonl``,
as ``main.py`` and ``python -m astrospectra_jax.suite`` write them) and every classical grid
(``classical_results.csv``), and writes ``report.md``, ``report.json`` (the numbers of the
tables) and the figures into ``--out``:

- Table 2: test accuracy per model and dataset, mean ± std over seeds, beside the paper's,
  with the average and variance over models;
- Tables 1-1 / 1-2: the classical grid beside the paper;
- confusion matrices (mean over seeds) and per-class precision / recall / F1;
- PCA and t-SNE maps of each dataset's test split (``--no-embeddings`` skips them);
- training curves, throughput and wall time per run, with the devices used.

Results from simulated spectra (``*_synthetic`` datasets, ``"synthetic": true``) are marked
loudly at the top and in every table and figure that holds them.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import json
import os
import re
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from astrospectra_jax import paper
from astrospectra_jax.data import catalogue
from astrospectra_jax.report import figures

REPORT_MD = "report.md"
REPORT_JSON = "report.json"
CLASSICAL_CSV = "classical_results.csv"
CLASSICAL_MD = "classical_results.md"
CLASSICAL_STORE = "classical_store"
RECORD = "suite_run.json"  # written by astrospectra_jax.suite
MAX_POINTS = 2000
SYNTHETIC_FLAG = "⚠️ **SYNTHETIC DATA**"


# ----------------------------------------------------------------------------- reading runs

def is_synthetic(dataset: str, flag: bool | None = None) -> bool:
    """A result is synthetic if its file says so or its dataset is a ``_synthetic`` one."""
    return bool(flag) or "_synthetic" in dataset


@dataclasses.dataclass
class DeepRun:
    workdir: Path
    results: dict
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


def model_label(model: str, input_size: int | None) -> str:
    return f"{paper.DEEP_MODEL_NAMES.get(model, model)} ({input_size or '?'})"


def read_curves(path: Path) -> tuple[dict, dict]:
    """(train, test) series from metrics.jsonl; a step logged twice (a resumed run) keeps its
    last record. Unreadable lines are skipped."""
    records: dict[tuple[str, int], dict] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            record = json.loads(line)
            records[(record["split"], int(record["step"]))] = record
        except (ValueError, KeyError, TypeError):
            continue
    series = {}
    for split in ("train", "test"):
        steps = sorted(step for s, step in records if s == split)
        series[split] = {
            "step": steps,
            "loss": [records[(split, s)].get("loss", np.nan) for s in steps],
            "accuracy": [records[(split, s)].get("accuracy", np.nan) for s in steps],
        }
    return series["train"], series["test"]


def _skip(path: Path) -> bool:
    return "checkpoints" in path.parts or any(p.startswith(".") for p in path.parts[-3:])


def find_deep_runs(runs_dir: Path) -> tuple[list[DeepRun], list[str]]:
    """Every readable run (results.json with dataset, model and accuracy) under ``runs_dir``,
    and a note for each unreadable one."""
    runs, problems = [], []
    for path in sorted(Path(runs_dir).rglob("results.json")):
        if _skip(path.relative_to(runs_dir)):
            continue
        try:
            results = json.loads(path.read_text())
            missing = [k for k in ("dataset", "model", "accuracy") if k not in results]
            if missing:
                raise ValueError(f"missing field(s) {', '.join(missing)}")
        except (OSError, ValueError) as error:
            problems.append(f"`{path}`: unreadable ({error})")
            continue
        train, test = read_curves(path.parent / "metrics.jsonl")
        runs.append(DeepRun(path.parent, results, train, test))
    return runs, problems


def find_incomplete(runs_dir: Path) -> list[dict]:
    """Runs without results.json: those the suite recorded (failed, interrupted or running),
    and workdirs holding only checkpoints (stopped before the end; rerun to resume)."""
    found = []
    for path in sorted(Path(runs_dir).rglob("checkpoints")):
        workdir = path.parent
        if (path.is_dir() and not (workdir / "results.json").is_file()
                and not (workdir / RECORD).is_file()):
            found.append({"workdir": str(workdir), "name": str(workdir.relative_to(runs_dir)),
                          "status": "unfinished", "error": "checkpoints but no results.json",
                          "log": ""})
    for path in sorted(Path(runs_dir).rglob(RECORD)):
        if (path.parent / "results.json").is_file():
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            record = {}
        found.append({"workdir": str(path.parent), "name": record.get("name", path.parent.name),
                      "status": record.get("status", "unknown"),
                      "error": record.get("error", ""), "log": record.get("log", "")})
    return found


@dataclasses.dataclass
class ClassicalResult:
    workdir: Path
    dataset: str
    synthetic: bool
    rows: list[dict]
    setup: dict = dataclasses.field(default_factory=dict)  # n_train, train_subsample, budget


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


_CLASSICAL_SETUP_KEYS = ("n_train", "n_test", "train_subsample", "time_budget_s")


def _classical_dataset(workdir: Path) -> tuple[str | None, bool | None, dict]:
    """The dataset of a classical grid and its training setup (train/test sizes, subsample,
    time budget): from its stored records, else the dataset alone from its Markdown title."""
    store = workdir / CLASSICAL_STORE
    if store.is_dir():
        for path in sorted(store.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if record.get("dataset"):
                setup = {k: record[k] for k in _CLASSICAL_SETUP_KEYS if k in record}
                return record["dataset"], record.get("synthetic"), setup
    try:
        title = (workdir / CLASSICAL_MD).read_text().splitlines()[0]
    except (OSError, IndexError):
        return None, None, {}
    match = re.match(r"^# Classical grid .* on (\S+)\s*$", title)
    return (match[1], None, {}) if match else (None, None, {})


def find_classical(runs_dir: Path) -> tuple[list[ClassicalResult], list[str]]:
    results, problems = [], []
    for path in sorted(Path(runs_dir).rglob(CLASSICAL_CSV)):
        if _skip(path.relative_to(runs_dir)):
            continue
        dataset, flag, setup = _classical_dataset(path.parent)
        if dataset is None:
            problems.append(f"`{path}`: cannot tell its dataset (no {CLASSICAL_STORE}/ records "
                            f"and no readable {CLASSICAL_MD} title)")
            continue
        try:
            with path.open(newline="") as f:
                raw = list(csv.DictReader(f))
        except (OSError, csv.Error) as error:
            problems.append(f"`{path}`: unreadable ({error})")
            continue
        rows = []
        for r in raw:
            row = dict(r)
            for key in ("accuracy", "paper_accuracy", "difference", "fit_s", "predict_s",
                        "image_accuracy", "line_minus_image", "paper_image_accuracy",
                        "paper_line_minus_image"):
                if key in row:
                    row[key] = _float(row[key])
            rows.append(row)
        results.append(ClassicalResult(path.parent, dataset, is_synthetic(dataset, flag), rows,
                                       setup))
    return results, problems


# ----------------------------------------------------------------------------- numbers

def _paper_deep(model: str, dataset: str) -> float | None:
    try:
        return paper.deep_accuracy(model, dataset)
    except ValueError:
        return None


def _paper_column(dataset: str) -> str | None:
    try:
        return paper.paper_column(dataset)
    except ValueError:
        return None


def _std(values: Sequence[float]) -> float | None:
    """Sample standard deviation over seeds (ddof=1); None for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _model_order(model: str) -> int:
    order = list(paper.table2_deep())  # the paper's row order
    published = paper.DEEP_MODEL_NAMES.get(model, model)
    return order.index(published) if published in order else len(order)


def aggregate(runs: Iterable[DeepRun]) -> list[dict]:
    """One row per (dataset, model, input size): accuracy mean and std over seeds, the
    paper's figure and the difference, in the paper's model order."""
    groups: dict[tuple, list[DeepRun]] = defaultdict(list)
    for run in runs:
        groups[(run.dataset, run.model, run.input_size)].append(run)
    rows = []
    for (dataset, model, size), members in groups.items():
        members.sort(key=lambda r: (r.seed is None, r.seed))
        accuracies = [float(r.results["accuracy"]) for r in members]
        published = _paper_deep(model, dataset)
        mean = float(np.mean(accuracies))
        rows.append({
            "dataset": dataset, "model": model, "input_size": size,
            "label": model_label(model, size), "n": len(members),
            "seeds": [r.seed for r in members], "accuracies": accuracies,
            "mean": mean, "std": _std(accuracies), "paper": published,
            "difference": None if published is None else mean - published,
            "synthetic": any(r.synthetic for r in members),
            "runs": members,
        })
    rows.sort(key=lambda r: (r["dataset"], _model_order(r["model"]), r["input_size"] or 0))
    return rows


def over_models(rows: Sequence[dict]) -> dict:
    """Average and variance (over models, ddof=0) of our means, and of the paper's figures
    for the same models."""
    ours = [r["mean"] for r in rows]
    theirs = [r["paper"] for r in rows if r["paper"] is not None]
    stats = {"n_models": len(ours), "ours_average": float(np.mean(ours)) if ours else None,
             "ours_variance": float(np.var(ours)) if ours else None,
             "paper_average": float(np.mean(theirs)) if theirs else None,
             "paper_variance": float(np.var(theirs)) if theirs else None,
             "n_paper_models": len(theirs)}
    return stats


def paper_over_all_models(column: str) -> dict:
    """The paper's Table 2 average and variance (ddof=0) over all eight models."""
    values = [row[column] for row in paper.table2_deep().values()]
    return {"average": float(np.mean(values)), "variance": float(np.var(values)),
            "n_models": len(values)}


def _dataset_order(dataset: str) -> tuple:
    column = _paper_column(dataset)
    columns = list(paper.IMAGE_COLUMNS) + list(paper.LINE_COLUMNS)
    return (columns.index(column) if column in columns else len(columns), dataset)


# ----------------------------------------------------------------------------- embeddings

def _features(x: np.ndarray) -> np.ndarray:
    """Images: pixels / 255; line vectors: each spectrum min-max scaled to [0, 1] (the image
    recipe's scaling), so bright objects do not dominate the map."""
    if x.ndim == 4 or x.dtype == np.uint8:
        return x.reshape(len(x), -1).astype(np.float32) / 255.0
    x = x.reshape(len(x), -1).astype(np.float32)
    low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    return (x - low) / np.where(high > low, high - low, 1.0)


def embed(x: np.ndarray, labels: np.ndarray, *, max_points: int = MAX_POINTS, seed: int = 0,
          tsne: bool = True) -> dict:
    """PCA (2 components) and t-SNE (on 50 PCA components) of a random subsample of at most
    ``max_points`` examples."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(x), size=min(max_points, len(x)), replace=False))
    features = _features(np.asarray(x)[chosen])
    pca = PCA(n_components=2, random_state=seed).fit(features)
    result = {"indices": chosen, "labels": np.asarray(labels)[chosen],
              "pca": pca.transform(features), "explained": pca.explained_variance_ratio_}
    if tsne and len(chosen) > 5:
        reduced = PCA(n_components=min(50, *features.shape), random_state=seed
                      ).fit_transform(features)
        perplexity = float(min(30.0, max(2.0, (len(chosen) - 1) / 4)))
        result["tsne"] = TSNE(n_components=2, perplexity=perplexity, init="pca",
                              learning_rate="auto", random_state=seed).fit_transform(reduced)
        result["perplexity"] = perplexity
    return result


# ----------------------------------------------------------------------------- Markdown

def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], body: Iterable[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(map(_cell, header)) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in body]
    return lines + [""]


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and not np.isfinite(value)) \
        else f"{value:.{digits}f}"


def _signed(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


def _mean_std(mean: float, std: float | None, n: int | None = None) -> str:
    text = f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")
    return text + (f" (n={n})" if n is not None else "")


def _synthetic_caption(datasets: Iterable[str]) -> str:
    names = ", ".join(f"`{d}`" for d in sorted(set(datasets)))
    return (f"{SYNTHETIC_FLAG}: {names} — simulated spectra, not LAMOST observations; "
            "the comparison with the paper is NOT a reproduction.")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _mark(dataset: str, synthetic: bool) -> str:
    return dataset + (figures.SYNTHETIC_MARK if synthetic else "")


@dataclasses.dataclass
class _Report:
    out: Path
    lines: list[str] = dataclasses.field(default_factory=list)
    data: dict = dataclasses.field(default_factory=dict)
    figures: list[str] = dataclasses.field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def figure(self, path: Path, alt: str) -> None:
        self.figures.append(path.name)
        self.add(f"![{alt}]({path.name})", "")


def _table2_section(report: _Report, rows: list[dict]) -> None:
    report.add("## Table 2: deep models (test accuracy)", "")
    image_rows = [r for r in rows if not catalogue.is_line_dataset(r["dataset"])]
    line_rows = [r for r in rows if catalogue.is_line_dataset(r["dataset"])]
    if not image_rows:
        report.add("_No runs found for Table 2 (no results.json of an image dataset under the "
                   "runs folder). Run e.g. `python -m astrospectra_jax.suite --dataset "
                   "astrospectra_mnist/v2_synthetic --models all --seeds 3 --runs DIR`._", "")
    else:
        datasets = sorted({r["dataset"] for r in image_rows}, key=_dataset_order)
        synthetic = sorted({r["dataset"] for r in image_rows if r["synthetic"]})
        if synthetic:
            report.add(f"> {_synthetic_caption(synthetic)}", "")
        report.add("Ours: mean ± sample std (ddof=1) of the test accuracy over seeds, n = number "
                   "of seeds; paper: Table 2 of the AstroSpectra-MNIST paper for the dataset's "
                   "column; Δ = ours − paper. The last rows give the average and variance "
                   "(ddof=0) over the models shown, the paper's over the same models.", "")
        keys = sorted({(r["model"], r["input_size"]) for r in image_rows},
                      key=lambda k: (_model_order(k[0]), k[1] or 0))
        by_key = {(r["dataset"], r["model"], r["input_size"]): r for r in image_rows}
        header = ["model (input)"]
        for dataset in datasets:
            mark = " ⚠️SYNTHETIC" if dataset in synthetic else ""
            header += [f"`{dataset}`{mark} ours", "paper", "Δ"]
        body = []
        for model, size in keys:
            line = [model_label(model, size)]
            for dataset in datasets:
                r = by_key.get((dataset, model, size))
                line += ([_mean_std(r["mean"], r["std"], r["n"]), _fmt(r["paper"]),
                          _signed(r["difference"])] if r else ["—", "—", "—"])
            body.append(line)
        stats = {d: over_models([r for r in image_rows if r["dataset"] == d]) for d in datasets}
        average, variance = ["**average over models**"], ["**variance over models**"]
        for d in datasets:
            s = stats[d]
            diff = (None if s["paper_average"] is None
                    else s["ours_average"] - s["paper_average"])
            average += [f"{_fmt(s['ours_average'])} ({s['n_models']} models)",
                        f"{_fmt(s['paper_average'])} ({s['n_paper_models']} models)",
                        _signed(diff)]
            variance += [_fmt(s["ours_variance"], 5), _fmt(s["paper_variance"], 5), ""]
        report.add(*md_table(header, body + [average, variance]))
        columns = sorted({c for d in datasets if (c := _paper_column(d)) in paper.IMAGE_COLUMNS})
        notes = []
        for column in columns:
            full = paper_over_all_models(column)
            notes.append(f"`{column}`: average {full['average']:.3f}, variance "
                         f"{full['variance']:.5f}")
        if notes:
            report.add("The paper's Table 2 over all eight models: " + "; ".join(notes) + ".", "")
        report.data["table2_over_models"] = stats
        for dataset in datasets:
            chosen = [r for r in image_rows if r["dataset"] == dataset]
            path = figures.accuracy_bars(
                report.out / f"table2_{_slug(dataset)}.png", [r["label"] for r in chosen],
                [r["mean"] for r in chosen], [r["std"] or 0.0 for r in chosen],
                [r["paper"] for r in chosen],
                title=f"Test accuracy on {_mark(dataset, dataset in synthetic)}: ours vs paper")
            report.figure(path, f"Table 2 accuracy on {dataset}")
    if line_rows:
        report.add("### 1-D model on the line vectors (not in the paper's Table 2)", "")
        synthetic = sorted({r["dataset"] for r in line_rows if r["synthetic"]})
        if synthetic:
            report.add(f"> {_synthetic_caption(synthetic)}", "")
        report.add("For reference, the paper's best classical accuracy on the same column "
                   "(Table 1-2).", "")
        body = []
        for r in line_rows:
            best = _paper_best_classical(r["dataset"])
            body.append([f"`{r['dataset']}`", r["label"], _mean_std(r["mean"], r["std"], r["n"]),
                         _fmt(best[1]) + (f" ({best[0]})" if best[0] else ""),
                         _signed(None if best[1] is None else r["mean"] - best[1])])
        report.add(*md_table(["dataset", "model (input)", "ours", "paper best classical",
                              "ours − paper best"], body))


def _paper_best_classical(dataset: str) -> tuple[str | None, float | None]:
    try:
        column = paper.paper_column(dataset)
    except ValueError:
        return None, None
    table = paper.table1_2_line_vs_images() if catalogue.is_line_dataset(dataset) \
        else paper.table1_1_classical()
    best = max(table, key=lambda r: r.get(column, -1.0), default=None)
    return (best["classifier"], best[column]) if best and column in best else (None, None)


def _classical_summary(result: ClassicalResult) -> dict:
    status: dict[str, int] = defaultdict(int)
    for r in result.rows:
        status[r.get("status") or "?"] += 1
    diffs = [r["difference"] for r in result.rows if r.get("difference") is not None]
    return {"dataset": result.dataset, "workdir": str(result.workdir),
            "synthetic": result.synthetic, "configurations": len(result.rows),
            "status": dict(status),
            "mean_difference": float(np.mean(diffs)) if diffs else None,
            "median_difference": float(np.median(diffs)) if diffs else None,
            "ours_higher": int(sum(d > 0 for d in diffs)), "compared": len(diffs),
            **result.setup}


def _classical_setup_text(setup: dict) -> str:
    """'trained on 2000 examples (stratified subsample); budget 120 s per configuration'."""
    parts = []
    if setup.get("n_train"):
        subsampled = setup.get("train_subsample", 0) > 0
        parts.append(f"trained on {setup['n_train']} examples"
                     + (" (a stratified subsample of the training split: NOT the paper's "
                        "full-split setting)" if subsampled else " (the full training split)"))
    if setup.get("time_budget_s"):
        parts.append(f"time budget {setup['time_budget_s']:g} s per configuration")
    return "; ".join(parts)


def _best_per_classifier(rows: Sequence[dict]) -> dict[str, tuple[float | None, float | None]]:
    best: dict[str, list] = {}
    for r in rows:
        b = best.setdefault(r["classifier"], [None, None])
        if r.get("accuracy") is not None:
            b[0] = max(b[0] or 0.0, r["accuracy"])
        if r.get("paper_accuracy") is not None:
            b[1] = max(b[1] or 0.0, r["paper_accuracy"])
    return {name: tuple(b) for name, b in best.items()}


def _classical_table(report: _Report, table: str, results: list[ClassicalResult],
                     runs_dir: Path) -> list[dict]:
    """One paper table (1-1 or 1-2) with a column group per grid found, as the paper lays it
    out: configurations as rows, datasets side by side."""
    line = table == "1-2"
    title = ("Table 1-2: line vectors against images of the same objects" if line
             else "Table 1-1: images")
    report.add(f"### {title}", "")
    synthetic = sorted({r.dataset for r in results if r.synthetic})
    if synthetic:
        report.add(f"> {_synthetic_caption(synthetic)}", "")
    datasets = [r.dataset for r in results]
    labels = []
    for result in results:
        where = os.path.relpath(result.workdir, runs_dir)
        mark = " ⚠️SYNTHETIC" if result.synthetic else ""
        labels.append(f"`{result.dataset}`{mark}"
                      + (f" (`{where}`)" if datasets.count(result.dataset) > 1 else ""))
    summaries = []
    for label, result in zip(labels, results):
        s = _classical_summary(result)
        summaries.append(s)
        text = (f"- {label}: {s['configurations']} configurations ("
                + ", ".join(f"{n} {k}" for k, n in sorted(s["status"].items())) + ")")
        if s["compared"]:
            text += (f"; ours − paper over {s['compared']}: mean {s['mean_difference']:+.3f}, "
                     f"median {s['median_difference']:+.3f}, ours higher in {s['ours_higher']}")
        setup = _classical_setup_text(result.setup)
        report.add(text + (f"; {setup}" if setup else "") + f"; from `{result.workdir}`")
    report.add("")

    best = [_best_per_classifier(r.rows) for r in results]
    classifiers = sorted({c for b in best for c in b},
                         key=lambda c: -max((b.get(c, (None,))[0] or 0.0) for b in best))
    header = ["classifier"]
    for label in labels:
        header += [f"{label} ours (best)", "paper (best)", "Δ"]
    body = []
    for c in classifiers:
        cells = [c]
        for b in best:
            ours, theirs = b.get(c, (None, None))
            cells += [_fmt(ours), _fmt(theirs),
                      _signed(None if ours is None or theirs is None else ours - theirs)]
        body.append(cells)
    report.add("Best configuration per classifier (over the configurations run):", "")
    report.add(*md_table(header, body))

    by_row = [{r.get("row"): r for r in result.rows} for result in results]
    keys = sorted({k for rows in by_row for k in rows},
                  key=lambda k: int(k) if str(k).isdigit() else 10**6)
    header = ["row", "classifier", "parameters"]
    for label in labels:
        header += [f"{label} ours", "paper", "Δ", "status"]
        if line:
            header += ["image", "image from", "line − image", "paper line − image"]
    body = []
    for key in keys:
        first = next(rows[key] for rows in by_row if key in rows)
        cells = [key, first["classifier"], first.get("params", "")]
        for rows in by_row:
            r = rows.get(key)
            if r is None:
                cells += ["—"] * (8 if line else 4)
                continue
            cells += [_fmt(r.get("accuracy")), _fmt(r.get("paper_accuracy")),
                      _signed(r.get("difference")), r.get("status", "")]
            if line:
                cells += [_fmt(r.get("image_accuracy")), r.get("image_source") or "—",
                          _signed(r.get("line_minus_image")),
                          _signed(r.get("paper_line_minus_image"))]
        body.append(cells)
    report.add(f"<details><summary>All {len(keys)} configurations (Table {table}'s rows, "
               "0-based)</summary>", "")
    report.add(*md_table(header, body))
    report.add("</details>", "")

    for label, result in zip(labels, results):
        pairs = [(r["accuracy"], r["paper_accuracy"], r["classifier"]) for r in result.rows
                 if r.get("accuracy") is not None and r.get("paper_accuracy") is not None]
        if not pairs:
            continue
        ours, theirs, names = zip(*pairs)
        where = os.path.relpath(result.workdir, runs_dir)
        path = figures.classical_scatter(
            report.out / f"classical_{_slug(result.dataset)}_{_slug(where)}.png",
            ours, theirs, names,
            title=f"Table {table} on {_mark(result.dataset, result.synthetic)}: ours vs paper "
                  "per configuration")
        report.figure(path, f"classical grid on {result.dataset}: ours against the paper")
    return summaries


def _classical_section(report: _Report, results: list[ClassicalResult], runs_dir: Path) -> None:
    report.add("## Tables 1-1 and 1-2: classical scikit-learn grid", "")
    if not results:
        report.add(f"_No classical runs found under `{runs_dir}` ({CLASSICAL_CSV}). Run e.g. "
                   "`python main.py --config=configs/classical_v2.py --config.dataset="
                   "astrospectra_mnist/v2_synthetic --workdir=DIR/classical_v2_synthetic`._", "")
        return
    results = sorted(results, key=lambda r: (_dataset_order(r.dataset), str(r.workdir)))
    summaries = []
    for table, chosen in (("1-1", [r for r in results if not catalogue.is_line_dataset(r.dataset)]),
                          ("1-2", [r for r in results if catalogue.is_line_dataset(r.dataset)])):
        if chosen:
            summaries += _classical_table(report, table, chosen, runs_dir)
        else:
            kind = "line-vector" if table == "1-2" else "image"
            report.add(f"### Table {table}", "", f"_No classical runs found for Table {table} "
                       f"(no {kind} dataset grid under the runs folder)._", "")
    report.data["classical"] = summaries


def _confusion_section(report: _Report, rows: list[dict]) -> None:
    report.add("## Confusion matrices and per-class metrics", "")
    if not rows:
        report.add("_No deep runs found: no confusion matrices._", "")
        return
    for dataset in sorted({r["dataset"] for r in rows}, key=_dataset_order):
        chosen = [r for r in rows if r["dataset"] == dataset]
        synthetic = any(r["synthetic"] for r in chosen)
        report.add(f"### `{dataset}`", "")
        if synthetic:
            report.add(f"> {_synthetic_caption([dataset])}", "")
        panels, body = [], []
        for r in chosen:
            matrices = [np.asarray(run.results["confusion_matrix"], float) for run in r["runs"]
                        if run.results.get("confusion_matrix") is not None]
            names = r["runs"][0].results.get("class_names") or []
            if matrices and len({m.shape for m in matrices}) == 1:
                panels.append({"title": f"{r['label']}, n={len(matrices)}\n"
                                        f"accuracy {r['mean']:.3f}",
                               "matrix": np.mean(matrices, axis=0),
                               "class_names": names or [str(i) for i in range(len(matrices[0]))]})
            for name in names:
                values = {k: [run.results["per_class"][name][k] for run in r["runs"]
                              if name in run.results.get("per_class", {})]
                          for k in ("precision", "recall", "f1", "support")}
                if not values["f1"]:
                    continue
                body.append([r["label"], name]
                            + [_mean_std(float(np.mean(values[k])), _std(values[k]))
                               for k in ("precision", "recall", "f1")]
                            + [f"{np.mean(values['support']):.0f}", len(values["f1"])])
        if panels:
            path = figures.confusion_grid(
                report.out / f"confusion_{_slug(dataset)}.png", panels,
                title=f"Confusion matrices on {_mark(dataset, synthetic)}, test split\n"
                      "mean counts over seeds; colour and first number: fraction of the true "
                      "class")
            report.figure(path, f"confusion matrices on {dataset}")
        if body:
            report.add("Per-class metrics on the test split (mean ± std over seeds):", "")
            report.add(*md_table(["model (input)", "class", "precision", "recall", "F1",
                                  "support", "seeds"], body))


def _embedding_section(report: _Report, datasets: dict[str, bool], data_dir: str | None,
                       enabled: bool, max_points: int) -> None:
    report.add("## The datasets: PCA and t-SNE of the test split", "")
    if not enabled:
        report.add("_Skipped (--no-embeddings)._", "")
        return
    if not datasets:
        report.add("_No runs found: no datasets to map._", "")
        return

    report.data["embeddings"] = {}
    for dataset in sorted(datasets, key=_dataset_order):
        report.add(f"### `{dataset}`", "")
        synthetic = datasets[dataset]
        try:
            x, y = catalogue.load_arrays(dataset, "test", data_dir=data_dir)
            class_names = list(catalogue.info(dataset).class_names)
        except Exception as error:  # a missing download, an unknown name, a broken build
            report.add(f"_Could not load the test split of `{dataset}` "
                       f"(data dir {data_dir or 'TFDS default'}): {type(error).__name__}: "
                       f"{str(error).splitlines()[0] if str(error) else ''}_", "")
            continue
        if synthetic:
            report.add(f"> {_synthetic_caption([dataset])}", "")
        result = embed(x, y, max_points=max_points)
        n = len(result["indices"])
        panels = [{"title": f"PCA ({result['explained'].sum():.0%} of the variance)",
                   "points": result["pca"],
                   "xlabel": f"PC 1 ({result['explained'][0]:.1%})",
                   "ylabel": f"PC 2 ({result['explained'][1]:.1%})"}]
        if "tsne" in result:
            panels.append({"title": f"t-SNE (perplexity {result['perplexity']:.0f}, on 50 PCA "
                                    "components)", "points": result["tsne"],
                           "xlabel": "t-SNE 1", "ylabel": "t-SNE 2"})
        kind = "images (pixels / 255)" if x.ndim == 4 else \
            "line vectors (each min-max scaled to [0, 1])"
        path = figures.embeddings(
            report.out / f"embedding_{_slug(dataset)}.png", panels, result["labels"],
            class_names, title=f"{_mark(dataset, synthetic)}: {n} of {len(y)} test examples")
        report.add(f"{n} of {len(y)} test examples (random subsample, seed 0), {kind}.", "")
        report.figure(path, f"PCA and t-SNE of {dataset}")
        report.data["embeddings"][dataset] = {"points": n, "test_examples": int(len(y)),
                                              "pca_explained": result["explained"].tolist()}


def _curves_section(report: _Report, runs: list[DeepRun]) -> None:
    report.add("## Training curves", "")
    if not runs:
        report.add("_No deep runs found: no training curves._", "")
        return
    for dataset in sorted({r.dataset for r in runs}, key=_dataset_order):
        chosen = sorted((r for r in runs if r.dataset == dataset),
                        key=lambda r: (_model_order(r.model), r.input_size or 0, str(r.seed)))
        synthetic = any(r.synthetic for r in chosen)
        curves = [{"label": f"{r.label} seed {r.seed}", "group": r.label, "style": i,
                   "train": r.train, "test": r.test}
                  for i, r in enumerate(chosen)]
        for curve, run in zip(curves, chosen):
            seeds = sorted(str(r.seed) for r in chosen if r.label == run.label)
            curve["style"] = seeds.index(str(run.seed))
        report.add(f"### `{dataset}`", "")
        if synthetic:
            report.add(f"> {_synthetic_caption([dataset])}", "")
        if not any(r.train["step"] or r.test["step"] for r in chosen):
            report.add("_No metrics.jsonl records in these runs._", "")
            continue
        path = figures.training_curves(
            report.out / f"curves_{_slug(dataset)}.png", curves,
            title=f"Training curves on {_mark(dataset, synthetic)} (train: running mean over "
                  "the logging window; test: whole test split)")
        report.figure(path, f"training curves on {dataset}")


def _device_text(devices: dict | None) -> str:
    if not devices:
        return "?"
    text = f"{devices.get('count', '?')} × {devices.get('kind', '?')} ({devices.get('platform', '?')})"
    processes = devices.get("processes")
    return text + (f", {processes} processes" if processes and processes > 1 else "")


def _throughput_section(report: _Report, runs: list[DeepRun], rows: list[dict]) -> None:
    report.add("## Throughput and wall time", "")
    if not runs:
        report.add("_No deep runs found: no throughput figures._", "")
        return
    devices = sorted({_device_text(r.results.get("devices")) for r in runs})
    report.add("Devices: " + "; ".join(devices) + ". Training throughput as the run measured "
               "it (after the first compiled call, excluding evaluation and checkpoints); "
               "wall time of the run's last session (data loading, compilation, evaluation "
               "included; a resumed run counts from its resume). "
               "Timings on shared machines are noisy.", "")
    synthetic = sorted({r.dataset for r in runs if r.synthetic})
    if synthetic:
        report.add(f"> {_synthetic_caption(synthetic)}", "")
    body = []
    for r in sorted(runs, key=lambda r: (_dataset_order(r.dataset), _model_order(r.model),
                                         r.input_size or 0, str(r.seed))):
        res = r.results
        batch = (res.get("config") or {}).get("batch_size")
        rate = res.get("train_examples_per_s")
        count = (res.get("devices") or {}).get("count")
        body.append([f"`{r.dataset}`", r.label, r.seed, res.get("steps", "—"),
                     _fmt(res.get("epochs"), 2), batch or "—", _fmt(rate, 0),
                     _fmt(rate / count if rate is not None and count else None, 0),
                     _fmt(res.get("wall_time_s"), 1), _fmt(res.get("compile_time_s"), 1),
                     _device_text(res.get("devices")),
                     "—" if res.get("resumed_from_step") is None else res["resumed_from_step"],
                     f"`{r.workdir}`"])
    report.add(*md_table(["dataset", "model (input)", "seed", "steps", "epochs", "batch",
                          "train examples/s", "per device", "wall s", "compile s", "devices",
                          "resumed from step", "workdir"], body))
    bars = [(f"{r['dataset'].split('/')[-1]}: {r['label']}",
             [x for x in (run.results.get("train_examples_per_s") for run in r["runs"])
              if x is not None]) for r in rows]
    bars = [(label, values) for label, values in bars if values]
    if bars:
        labels, values = zip(*bars)
        path = figures.throughput_bars(
            report.out / "throughput.png", labels, [float(np.mean(v)) for v in values],
            [float(np.std(v)) for v in values],
            title="Training throughput per model" + (figures.SYNTHETIC_MARK if synthetic else "")
                  + f"\n{'; '.join(devices)}")
        report.figure(path, "training throughput per model")


def _problems_section(report: _Report, incomplete: list[dict], problems: list[str]) -> None:
    if not incomplete and not problems:
        return
    report.add("## Runs without results", "")
    if incomplete:
        report.add(*md_table(["run", "status", "error", "log"],
                             [[r["name"], r["status"], r["error"] or "—",
                               f"`{r['log']}`" if r["log"] else "—"] for r in incomplete]))
    for problem in problems:
        report.add(f"- {problem}")
    report.add("")


def _banner(synthetic: dict[str, int], total: int) -> list[str]:
    if not synthetic:
        return []
    count = sum(synthetic.values())
    names = ", ".join(f"`{d}` ({n})" for d, n in sorted(synthetic.items()))
    return [
        "> # ⚠️ SYNTHETIC DATA ⚠️",
        ">",
        f"> **{count} of the {total} results in this report come from SIMULATED spectra, "
        "not LAMOST observations.** Their accuracies measure this code on the offline "
        "simulator; set beside the paper they are NOT a reproduction of its results. "
        "Every affected table and figure is marked SYNTHETIC.",
        ">",
        f"> Synthetic datasets (results): {names}",
        "",
    ]


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "runs"} for r in rows]


def build_report(runs_dir: str | Path, out_dir: str | Path, *, data_dir: str | None = None,
                 embeddings: bool = True, max_points: int = MAX_POINTS) -> Path:
    """Write report.md, report.json and the figures into ``out_dir``; returns report.md's
    path. Sections without data say so; the report always renders."""
    runs_dir = Path(runs_dir).absolute()
    if not runs_dir.is_dir():
        raise FileNotFoundError(f"--runs {runs_dir}: no such folder")
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)

    runs, problems = find_deep_runs(runs_dir)
    classical, classical_problems = find_classical(runs_dir)
    incomplete = find_incomplete(runs_dir)
    rows = aggregate(runs)

    synthetic: dict[str, int] = defaultdict(int)
    for run in runs:
        if run.synthetic:
            synthetic[run.dataset] += 1
    for result in classical:
        if result.synthetic:
            synthetic[result.dataset] += len(result.rows)
    total = len(runs) + sum(len(c.rows) for c in classical)
    datasets = {r.dataset: r.synthetic for r in runs}
    for c in classical:
        datasets[c.dataset] = datasets.get(c.dataset, False) or c.synthetic
    if data_dir is None:  # the runs know where their data lives
        data_dir = next((d for r in runs if (d := (r.results.get("config") or {}).get("data_dir"))),
                        None)

    report = _Report(out)
    generated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report.add("# AstroSpectra-MNIST reproduction report", "")
    report.add(*_banner(dict(synthetic), total))
    commits = sorted({c[:12] for r in runs if (c := r.results.get("git_commit"))})
    devices = sorted({_device_text(r.results.get("devices")) for r in runs})
    report.add(f"- generated: {generated}", f"- runs folder: `{runs_dir}`",
               f"- deep runs: {len(runs)} ({len(rows)} model/dataset groups); classical grids: "
               f"{len(classical)} ({sum(len(c.rows) for c in classical)} configurations)",
               f"- devices: {'; '.join(devices) if devices else '—'}",
               f"- code: {', '.join(commits) if commits else 'git commit not recorded'}", "")

    _table2_section(report, rows)
    _classical_section(report, classical, runs_dir)
    _confusion_section(report, rows)
    _embedding_section(report, datasets, data_dir, embeddings, max_points)
    _curves_section(report, runs)
    _throughput_section(report, runs, rows)
    _problems_section(report, incomplete, problems + classical_problems)

    report.data.update({
        "generated": generated, "runs_dir": str(runs_dir),
        "synthetic": bool(synthetic), "synthetic_results": dict(synthetic),
        "deep": _jsonable(rows), "incomplete": incomplete,
        "problems": problems + classical_problems, "figures": report.figures,
    })
    _atomic_write(out / REPORT_JSON, json.dumps(report.data, indent=2, default=str) + "\n")
    path = out / REPORT_MD
    _atomic_write(path, "\n".join(report.lines).rstrip() + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m astrospectra_jax.report",
        description="Write the reproduction report (Markdown + PNG) from the runs in a folder.")
    parser.add_argument("--runs", required=True, help="folder holding the runs' workdirs")
    parser.add_argument("--out", default=None, help="output folder (default: RUNS/report)")
    parser.add_argument("--data-dir", default=None,
                        help="TFDS data folder for the dataset maps (default: the runs' "
                             "config.data_dir, else the TFDS default)")
    parser.add_argument("--no-embeddings", action="store_true",
                        help="skip the PCA / t-SNE maps (they load each test split)")
    parser.add_argument("--max-points", type=int, default=MAX_POINTS,
                        help="examples per dataset map (random subsample)")
    args = parser.parse_args(argv)
    if args.max_points < 10:
        parser.error(f"--max-points {args.max_points}: need at least 10")
    if not Path(args.runs).is_dir():
        parser.error(f"--runs {args.runs}: no such folder")
    out = args.out or str(Path(args.runs) / "report")
    path = build_report(args.runs, out, data_dir=args.data_dir,
                        embeddings=not args.no_embeddings, max_points=args.max_points)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
