"""The grid's table against the paper: CSV, Markdown and ``classical_results.json``.

``compare_with_paper`` turns store records into table rows (ours, the paper's accuracy, the
difference; for line vectors also the image accuracy on the same objects); ``write_results``
writes them as ``classical_results.json`` (what the report reads), ``.csv`` and ``.md``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from astrospectra_jax import markdown, paper, results
from astrospectra_jax.classical import store
from astrospectra_jax.data import catalogue

# fit_cpu_s: CPU seconds of the fitting process, a steadier figure than fit_s on a shared
# machine (it counts other fits too where several share a process: Dask with no time budget).
CSV_COLUMNS = ("row", "classifier", "params", "accuracy", "paper_accuracy", "difference",
               "fit_s", "fit_cpu_s", "predict_s", "status", "notes")
LINE_CSV_COLUMNS = ("image_accuracy", "image_source", "line_minus_image",
                    "paper_image_accuracy", "paper_line_minus_image")


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
        for record in store.read_store(folder).values():
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


def _markdown_text(rows: Sequence[dict], *, dataset: str, synthetic: bool,
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
    lines += markdown.table(("classifier", "ours (best)", "paper (best)", "difference"),
                       [(s["classifier"], markdown.fmt(s["ours"]), markdown.fmt(s["paper"]),
                         markdown.signed(s["difference"]))
                        for s in family_summary(rows)])
    lines += ["", "## All configurations", ""]
    lines += markdown.table(
        ("row", "classifier", "parameters", "ours", "paper", "difference", "fit s",
         "predict s", "status", "notes"),
        [(r["row"], r["classifier"], r["params"], markdown.fmt(r["accuracy"]),
          markdown.fmt(r["paper_accuracy"]),
          markdown.signed(r["difference"]),
          markdown.fmt(r["fit_s"], 1), markdown.fmt(r["predict_s"], 2), r["status"], r["notes"])
         for r in rows])
    if line:
        image_dataset = paper.image_dataset_for(dataset)
        ours_images = sum(r["image_source"] == "ours" for r in rows)
        lines += ["", "## Line vectors against images of the same objects (Table 1-2)", "",
                  f"Image accuracy: ours on `{image_dataset}` for {ours_images} of "
                  f"{len(rows)} rows, the paper's Table 1-2 image column for the rest.", ""]
        lines += markdown.table(
            ("row", "classifier", "parameters", "line (ours)", "image", "image from",
             "line - image", "paper line", "paper image", "paper line - image"),
            [(r["row"], r["classifier"], r["params"], markdown.fmt(r["accuracy"]),
              markdown.fmt(r["image_accuracy"]), r["image_source"],
              markdown.signed(r["line_minus_image"]),
              markdown.fmt(r["paper_accuracy"]), markdown.fmt(r["paper_image_accuracy"]),
              markdown.signed(r["paper_line_minus_image"]))
             for r in rows])
    return "\n".join(lines) + "\n"


def write_results(rows: Sequence[dict], workdir, *, dataset: str, synthetic: bool,
                  setup: Mapping | None = None, settings: Sequence[str] = ()) -> list[Path]:
    """Write ``classical_results.json`` (a ``results.ClassicalSummary``), ``.csv`` and ``.md``
    (each atomically); returns their paths."""
    workdir = Path(workdir)
    columns = CSV_COLUMNS + (LINE_CSV_COLUMNS if catalogue.is_line_dataset(dataset) else ())
    summary: results.ClassicalSummary = {
        "dataset": dataset, "synthetic": bool(synthetic), "setup": dict(setup or {}),
        "settings": list(settings), "rows": [{c: row.get(c) for c in columns} for row in rows]}
    paths = [workdir / results.CLASSICAL_JSON, workdir / results.CLASSICAL_CSV,
             workdir / results.CLASSICAL_MD]
    results.write_json(paths[0], summary)
    results.write_text(paths[1], _csv_text(rows, columns))
    results.write_text(paths[2], _markdown_text(rows, dataset=dataset, synthetic=synthetic,
                                                settings=settings))
    return paths


def table_notes(dataset: str) -> list[str]:
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
