"""The report's tables: Table 2 (deep models), Tables 1-1 / 1-2 (the classical grid),
throughput and the runs without results, each beside the paper where the paper has a figure.

``Report`` collects the Markdown lines, the numbers for ``report.json`` and the figures.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from astrospectra_jax import markdown, paper, results
from astrospectra_jax.data import catalogue
from astrospectra_jax.report import figures
from astrospectra_jax.report.collect import ClassicalResult, DeepRun, model_label

SYNTHETIC_FLAG = "⚠️ **SYNTHETIC DATA**"


def mean_std(mean: float, std: float | None, n: int | None = None) -> str:
    text = f"{mean:.3f}" + (f" ± {std:.3f}" if std is not None else "")
    return text + (f" (n={n})" if n is not None else "")


def synthetic_caption(datasets: Iterable[str]) -> str:
    names = ", ".join(f"`{d}`" for d in sorted(set(datasets)))
    return (f"{SYNTHETIC_FLAG}: {names} — simulated spectra, not LAMOST observations; "
            "the comparison with the paper is NOT a reproduction.")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def marked(dataset: str, synthetic: bool) -> str:
    return dataset + (figures.SYNTHETIC_MARK if synthetic else "")


@dataclasses.dataclass
class Report:
    out: Path
    lines: list[str] = dataclasses.field(default_factory=list)
    data: dict = dataclasses.field(default_factory=dict)
    figures: list[str] = dataclasses.field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, header: Sequence, body: Iterable[Sequence]) -> None:
        self.add(*markdown.table(header, body), "")

    def figure(self, path: Path, alt: str) -> None:
        self.figures.append(path.name)
        self.add(f"![{alt}]({path.name})", "")



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


def std_over_seeds(values: Sequence[float]) -> float | None:
    """Sample standard deviation over seeds (ddof=1); None for a single seed."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def model_order(model: str) -> int:
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
            "mean": mean, "std": std_over_seeds(accuracies), "paper": published,
            "difference": None if published is None else mean - published,
            "synthetic": any(r.synthetic for r in members),
            "runs": members,
        })
    rows.sort(key=lambda r: (r["dataset"], model_order(r["model"]), r["input_size"] or 0))
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


def dataset_order(dataset: str) -> tuple:
    column = _paper_column(dataset)
    columns = list(paper.IMAGE_COLUMNS) + list(paper.LINE_COLUMNS)
    return (columns.index(column) if column in columns else len(columns), dataset)


def table2_section(report: Report, rows: list[dict]) -> None:
    report.add("## Table 2: deep models (test accuracy)", "")
    image_rows = [r for r in rows if not catalogue.is_line_dataset(r["dataset"])]
    line_rows = [r for r in rows if catalogue.is_line_dataset(r["dataset"])]
    if not image_rows:
        report.add("_No runs found for Table 2 (no results.json of an image dataset under the "
                   "runs folder). Run e.g. `python -m astrospectra_jax.suite --dataset "
                   "astrospectra_mnist/v2_synthetic --models all --seeds 3 --runs DIR`._", "")
    else:
        datasets = sorted({r["dataset"] for r in image_rows}, key=dataset_order)
        synthetic = sorted({r["dataset"] for r in image_rows if r["synthetic"]})
        if synthetic:
            report.add(f"> {synthetic_caption(synthetic)}", "")
        report.add("Ours: mean ± sample std (ddof=1) of the test accuracy over seeds, n = number "
                   "of seeds; paper: Table 2 of the AstroSpectra-MNIST paper for the dataset's "
                   "column; Δ = ours − paper. The last rows give the average and variance "
                   "(ddof=0) over the models shown, the paper's over the same models.", "")
        keys = sorted({(r["model"], r["input_size"]) for r in image_rows},
                      key=lambda k: (model_order(k[0]), k[1] or 0))
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
                line += ([mean_std(r["mean"], r["std"], r["n"]), markdown.fmt(r["paper"]),
                          markdown.signed(r["difference"])] if r else ["—", "—", "—"])
            body.append(line)
        stats = {d: over_models([r for r in image_rows if r["dataset"] == d]) for d in datasets}
        average, variance = ["**average over models**"], ["**variance over models**"]
        for d in datasets:
            s = stats[d]
            diff = (None if s["paper_average"] is None
                    else s["ours_average"] - s["paper_average"])
            average += [f"{markdown.fmt(s['ours_average'])} ({s['n_models']} models)",
                        f"{markdown.fmt(s['paper_average'])} ({s['n_paper_models']} models)",
                        markdown.signed(diff)]
            variance += [markdown.fmt(s["ours_variance"], 5),
                         markdown.fmt(s["paper_variance"], 5), ""]
        report.table(header, body + [average, variance])
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
                report.out / f"table2_{slug(dataset)}.png", [r["label"] for r in chosen],
                [r["mean"] for r in chosen], [r["std"] or 0.0 for r in chosen],
                [r["paper"] for r in chosen],
                title=f"Test accuracy on {marked(dataset, dataset in synthetic)}: ours vs paper")
            report.figure(path, f"Table 2 accuracy on {dataset}")
    if line_rows:
        report.add("### 1-D model on the line vectors (not in the paper's Table 2)", "")
        synthetic = sorted({r["dataset"] for r in line_rows if r["synthetic"]})
        if synthetic:
            report.add(f"> {synthetic_caption(synthetic)}", "")
        report.add("For reference, the paper's best classical accuracy on the same column "
                   "(Table 1-2).", "")
        body = []
        for r in line_rows:
            best = _paper_best_classical(r["dataset"])
            body.append([f"`{r['dataset']}`", r["label"], mean_std(r["mean"], r["std"], r["n"]),
                         markdown.fmt(best[1]) + (f" ({best[0]})" if best[0] else ""),
                         markdown.signed(None if best[1] is None else r["mean"] - best[1])])
        report.table(["dataset", "model (input)", "ours", "paper best classical",
                              "ours − paper best"], body)


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


def _classical_table(report: Report, table: str, grids: list[ClassicalResult],
                     runs_dir: Path) -> list[dict]:
    """One paper table (1-1 or 1-2) with a column group per grid found, as the paper lays it
    out: configurations as rows, datasets side by side."""
    line = table == "1-2"
    title = ("Table 1-2: line vectors against images of the same objects" if line
             else "Table 1-1: images")
    report.add(f"### {title}", "")
    synthetic = sorted({r.dataset for r in grids if r.synthetic})
    if synthetic:
        report.add(f"> {synthetic_caption(synthetic)}", "")
    datasets = [r.dataset for r in grids]
    labels = []
    for result in grids:
        where = os.path.relpath(result.workdir, runs_dir)
        mark = " ⚠️SYNTHETIC" if result.synthetic else ""
        labels.append(f"`{result.dataset}`{mark}"
                      + (f" (`{where}`)" if datasets.count(result.dataset) > 1 else ""))
    summaries = []
    for label, result in zip(labels, grids):
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

    best = [_best_per_classifier(r.rows) for r in grids]
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
            cells += [markdown.fmt(ours), markdown.fmt(theirs),
                      markdown.signed(None if ours is None or theirs is None else ours - theirs)]
        body.append(cells)
    report.add("Best configuration per classifier (over the configurations run):", "")
    report.table(header, body)

    by_row = [{r.get("row"): r for r in result.rows} for result in grids]
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
            cells += [markdown.fmt(r.get("accuracy")), markdown.fmt(r.get("paper_accuracy")),
                      markdown.signed(r.get("difference")), r.get("status", "")]
            if line:
                cells += [markdown.fmt(r.get("image_accuracy")), r.get("image_source") or "—",
                          markdown.signed(r.get("line_minus_image")),
                          markdown.signed(r.get("paper_line_minus_image"))]
        body.append(cells)
    report.add(f"<details><summary>All {len(keys)} configurations (Table {table}'s rows, "
               "0-based)</summary>", "")
    report.table(header, body)
    report.add("</details>", "")

    for label, result in zip(labels, grids):
        pairs = [(r["accuracy"], r["paper_accuracy"], r["classifier"]) for r in result.rows
                 if r.get("accuracy") is not None and r.get("paper_accuracy") is not None]
        if not pairs:
            continue
        ours, theirs, names = zip(*pairs)
        where = os.path.relpath(result.workdir, runs_dir)
        path = figures.classical_scatter(
            report.out / f"classical_{slug(result.dataset)}_{slug(where)}.png",
            ours, theirs, names,
            title=f"Table {table} on {marked(result.dataset, result.synthetic)}: ours vs paper "
                  "per configuration")
        report.figure(path, f"classical grid on {result.dataset}: ours against the paper")
    return summaries


def classical_section(report: Report, grids: list[ClassicalResult], runs_dir: Path) -> None:
    report.add("## Tables 1-1 and 1-2: classical scikit-learn grid", "")
    if not grids:
        report.add(f"_No classical runs found under `{runs_dir}` ({results.CLASSICAL_JSON}). "
                   "Run e.g. "
                   "`python main.py --config=configs/classical_v2.py --config.dataset="
                   "astrospectra_mnist/v2_synthetic --workdir=DIR/classical_v2_synthetic`._", "")
        return
    grids = sorted(grids, key=lambda r: (dataset_order(r.dataset), str(r.workdir)))
    summaries = []
    for table, chosen in (("1-1", [r for r in grids if not catalogue.is_line_dataset(r.dataset)]),
                          ("1-2", [r for r in grids if catalogue.is_line_dataset(r.dataset)])):
        if chosen:
            summaries += _classical_table(report, table, chosen, runs_dir)
        else:
            kind = "line-vector" if table == "1-2" else "image"
            report.add(f"### Table {table}", "", f"_No classical runs found for Table {table} "
                       f"(no {kind} dataset grid under the runs folder)._", "")
    report.data["classical"] = summaries



def transfer_section(report: Report, runs: list[DeepRun]) -> None:
    """Runs with ``eval_datasets`` sections (config.eval_datasets): each model on data other
    than its training set, e.g. simulated -> real. Absent when no run has such sections."""
    rows = []
    for run in sorted(runs, key=lambda r: (r.dataset, model_order(r.model), str(r.seed))):
        for name, section in (run.results.get("eval_datasets") or {}).items():
            recall = ", ".join(f"{c} {v['recall']:.2f}" if v.get("support", 1) and
                               v.get("recall") is not None else f"{c} n/a"  # no example of c
                               for c, v in (section.get("per_class") or {}).items())
            rows.append({"model": run.label, "seed": run.seed,
                         "trained_on": marked(run.dataset, run.synthetic),
                         "own_test": run.results.get("accuracy"),
                         "evaluated_on": marked(name, bool(section.get("synthetic"))),
                         "examples": section.get("examples", markdown.MISSING),
                         "accuracy": section.get("accuracy"), "recall": recall})
    if not rows:
        return
    report.add("## Across datasets (simulated -> real)", "",
               "Each model's final weights on other datasets (`--config.eval_datasets`): the "
               "accuracy on its own test split beside the accuracy elsewhere.", "")
    report.table(
        ["model", "seed", "trained on", "own test", "evaluated on", "examples", "accuracy",
         "recall per class"],
        ([r["model"], r["seed"], r["trained_on"], markdown.fmt(r["own_test"]), r["evaluated_on"],
          r["examples"], markdown.fmt(r["accuracy"]), r["recall"]] for r in rows))
    report.data["across_datasets"] = rows


def device_text(devices: dict | None) -> str:
    if not devices:
        return "?"
    text = (f"{devices.get('count', '?')} × {devices.get('kind', '?')} "
            f"({devices.get('platform', '?')})")
    processes = devices.get("processes")
    return text + (f", {processes} processes" if processes and processes > 1 else "")


def throughput_section(report: Report, runs: list[DeepRun], rows: list[dict]) -> None:
    report.add("## Throughput and wall time", "")
    if not runs:
        report.add("_No deep runs found: no throughput figures._", "")
        return
    devices = sorted({device_text(r.results.get("devices")) for r in runs})
    report.add("Devices: " + "; ".join(devices) + ". Training throughput as the run measured "
               "it (after the first compiled call, excluding evaluation and checkpoints); "
               "wall time of the run's last session (data loading, compilation, evaluation "
               "included; a resumed run counts from its resume). "
               "Timings on shared machines are noisy.", "")
    synthetic = sorted({r.dataset for r in runs if r.synthetic})
    if synthetic:
        report.add(f"> {synthetic_caption(synthetic)}", "")
    body = []
    for r in sorted(runs, key=lambda r: (dataset_order(r.dataset), model_order(r.model),
                                         r.input_size or 0, str(r.seed))):
        res = r.results
        batch = (res.get("config") or {}).get("batch_size")
        rate = res.get("train_examples_per_s")
        count = (res.get("devices") or {}).get("count")
        body.append([f"`{r.dataset}`", r.label, r.seed, res.get("steps", "—"),
                     markdown.fmt(res.get("epochs"), 2), batch or "—", markdown.fmt(rate, 0),
                     markdown.fmt(rate / count if rate is not None and count else None, 0),
                     markdown.fmt(res.get("wall_time_s"), 1),
                     markdown.fmt(res.get("compile_time_s"), 1),
                     device_text(res.get("devices")),
                     "—" if res.get("resumed_from_step") is None else res["resumed_from_step"],
                     f"`{r.workdir}`"])
    report.table(["dataset", "model (input)", "seed", "steps", "epochs", "batch",
                          "train examples/s", "per device", "wall s", "compile s", "devices",
                          "resumed from step", "workdir"], body)
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


def problems_section(report: Report, incomplete: list[dict], problems: list[str]) -> None:
    if not incomplete and not problems:
        return
    report.add("## Runs without results", "")
    if incomplete:
        report.table(["run", "status", "error", "log"],
                             [[r["name"], r["status"], r["error"] or "—",
                               f"`{r['log']}`" if r["log"] else "—"] for r in incomplete])
    for problem in problems:
        report.add(f"- {problem}")
    report.add("")

