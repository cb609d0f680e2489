"""The reproduction report: our results beside the paper's tables, as Markdown with PNGs.

    python -m astrospectra_jax.report --runs runs/ --out runs/report [--data-dir DIR]
        [--no-embeddings] [--max-points 2000]

Reads every deep run under ``--runs`` (a folder holding ``results.json`` and ``metrics.jsonl``,
as ``main.py`` and ``python -m astrospectra_jax.suite`` write them) and every classical grid
(``classical_results.json``), and writes ``report.md``, ``report.json`` (the numbers of the
tables) and the figures into ``--out``:

- Table 2: test accuracy per model and dataset, mean ± std over seeds, beside the paper's,
  with the average and variance over models;
- Tables 1-1 / 1-2: the classical grid beside the paper;
- confusion matrices (mean over seeds) and per-class precision / recall / F1;
- PCA and t-SNE maps of each dataset's test split (``--no-embeddings`` skips them);
- training curves, throughput and wall time per run, with the devices used.

Results from simulated spectra (``*_synthetic`` datasets, ``"synthetic": true``) are marked
loudly at the top and in every table and figure that holds them. ``collect`` finds and reads
the runs, ``tables`` writes the tables, ``figures`` draws; this module assembles the report.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from astrospectra_jax import results
from astrospectra_jax.data import catalogue
from astrospectra_jax.report import collect, figures
from astrospectra_jax.report.collect import DeepRun
from astrospectra_jax.report.tables import (Report, classical_section, dataset_order, device_text,
                                            marked, mean_std, model_order, problems_section,
                                            slug, std_over_seeds, synthetic_caption,
                                            table2_section, throughput_section,
                                            transfer_section, aggregate)

MAX_POINTS = 2000


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



# ------------------------------------------------------------------------- sections with figures

def _confusion_section(report: Report, rows: list[dict]) -> None:
    report.add("## Confusion matrices and per-class metrics", "")
    if not rows:
        report.add("_No deep runs found: no confusion matrices._", "")
        return
    for dataset in sorted({r["dataset"] for r in rows}, key=dataset_order):
        chosen = [r for r in rows if r["dataset"] == dataset]
        synthetic = any(r["synthetic"] for r in chosen)
        report.add(f"### `{dataset}`", "")
        if synthetic:
            report.add(f"> {synthetic_caption([dataset])}", "")
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
                            + [mean_std(float(np.mean(values[k])), std_over_seeds(values[k]))
                               for k in ("precision", "recall", "f1")]
                            + [f"{np.mean(values['support']):.0f}", len(values["f1"])])
        if panels:
            path = figures.confusion_grid(
                report.out / f"confusion_{slug(dataset)}.png", panels,
                title=f"Confusion matrices on {marked(dataset, synthetic)}, test split\n"
                      "mean counts over seeds; colour and first number: fraction of the true "
                      "class")
            report.figure(path, f"confusion matrices on {dataset}")
        if body:
            report.add("Per-class metrics on the test split (mean ± std over seeds):", "")
            report.table(["model (input)", "class", "precision", "recall", "F1",
                                  "support", "seeds"], body)


def _embedding_section(report: Report, datasets: dict[str, bool], data_dir: str | None,
                       enabled: bool, max_points: int) -> None:
    report.add("## The datasets: PCA and t-SNE of the test split", "")
    if not enabled:
        report.add("_Skipped (--no-embeddings)._", "")
        return
    if not datasets:
        report.add("_No runs found: no datasets to map._", "")
        return

    report.data["embeddings"] = {}
    for dataset in sorted(datasets, key=dataset_order):
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
            report.add(f"> {synthetic_caption([dataset])}", "")
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
            report.out / f"embedding_{slug(dataset)}.png", panels, result["labels"],
            class_names, title=f"{marked(dataset, synthetic)}: {n} of {len(y)} test examples")
        report.add(f"{n} of {len(y)} test examples (random subsample, seed 0), {kind}.", "")
        report.figure(path, f"PCA and t-SNE of {dataset}")
        report.data["embeddings"][dataset] = {"points": n, "test_examples": int(len(y)),
                                              "pca_explained": result["explained"].tolist()}


def _curves_section(report: Report, runs: list[DeepRun]) -> None:
    report.add("## Training curves", "")
    if not runs:
        report.add("_No deep runs found: no training curves._", "")
        return
    for dataset in sorted({r.dataset for r in runs}, key=dataset_order):
        chosen = sorted((r for r in runs if r.dataset == dataset),
                        key=lambda r: (model_order(r.model), r.input_size or 0, str(r.seed)))
        synthetic = any(r.synthetic for r in chosen)
        curves = [{"label": f"{r.label} seed {r.seed}", "group": r.label, "style": i,
                   "train": r.train, "test": r.test}
                  for i, r in enumerate(chosen)]
        for curve, run in zip(curves, chosen):
            seeds = sorted(str(r.seed) for r in chosen if r.label == run.label)
            curve["style"] = seeds.index(str(run.seed))
        report.add(f"### `{dataset}`", "")
        if synthetic:
            report.add(f"> {synthetic_caption([dataset])}", "")
        if not any(r.train["step"] or r.test["step"] for r in chosen):
            report.add("_No metrics.jsonl records in these runs._", "")
            continue
        path = figures.training_curves(
            report.out / f"curves_{slug(dataset)}.png", curves,
            title=f"Training curves on {marked(dataset, synthetic)} (train: running mean over "
                  "the logging window; test: whole test split)")
        report.figure(path, f"training curves on {dataset}")



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

    runs, problems = collect.find_deep_runs(runs_dir)
    classical, classical_problems = collect.find_classical(runs_dir)
    incomplete = collect.find_incomplete(runs_dir)
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

    report = Report(out)
    generated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report.add("# AstroSpectra-MNIST reproduction report", "")
    report.add(*_banner(dict(synthetic), total))
    commits = sorted({c[:12] for r in runs if (c := r.results.get("git_commit"))})
    devices = sorted({device_text(r.results.get("devices")) for r in runs})
    report.add(f"- generated: {generated}", f"- runs folder: `{runs_dir}`",
               f"- deep runs: {len(runs)} ({len(rows)} model/dataset groups); classical grids: "
               f"{len(classical)} ({sum(len(c.rows) for c in classical)} configurations)",
               f"- devices: {'; '.join(devices) if devices else '—'}",
               f"- code: {', '.join(commits) if commits else 'git commit not recorded'}", "")

    table2_section(report, rows)
    transfer_section(report, runs)
    classical_section(report, classical, runs_dir)
    _confusion_section(report, rows)
    _embedding_section(report, datasets, data_dir, embeddings, max_points)
    _curves_section(report, runs)
    throughput_section(report, runs, rows)
    problems_section(report, incomplete, problems + classical_problems)

    report.data.update({
        "generated": generated, "runs_dir": str(runs_dir),
        "synthetic": bool(synthetic), "synthetic_results": dict(synthetic),
        "deep": _jsonable(rows), "incomplete": incomplete,
        "problems": problems + classical_problems, "figures": report.figures,
    })
    results.write_json(out / results.REPORT_JSON, report.data)
    path = out / results.REPORT_MD
    results.write_text(path, "\n".join(report.lines).rstrip() + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    from astrospectra_jax import logs

    logs.setup()
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
