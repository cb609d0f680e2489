"""The report, rendered from real tiny runs: every section, the synthetic banner, empty folders."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from astrospectra_jax import paper, results, suite
from astrospectra_jax.classical import grid
from astrospectra_jax.report import build as report
from astrospectra_jax.report import collect

MINI = "astrospectra_mnist/v2_synthetic_mini"
TINY = ["num_epochs=1", "max_steps=4", "batch_size=32", "steps_per_call=2",
        "log_every_steps=2", "eval_every_epochs=0"]
CLASSICAL_ROWS = (0, 24)  # a decision tree and Gaussian naive Bayes: fast
CLASSICAL_TRAIN = 150  # a subsample, which the report must say
BANNER = "# ⚠️ SYNTHETIC DATA ⚠️"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Two real runs (LeNet, SimpleCNN1; seed 0), a copy of the LeNet run as seed 1 with
    another accuracy, and a real two-configuration classical grid, all on the mini dataset."""
    root = tmp_path_factory.mktemp("report")
    data_dir = str(root / "tfds")
    runs_dir = root / "runs"
    planned = suite.plan([MINI], "lenet,simplecnn1", [0], runs_dir, overrides=TINY,
                         data_dir=data_dir)
    summary = suite.execute(planned, progress=False)
    assert summary["done"] == 2, suite.format_summary(summary)

    lenet = planned[0].workdir
    copy = lenet.parent / "seed1"
    shutil.copytree(lenet, copy)
    results = json.loads((copy / "results.json").read_text())
    results["seed"] = results["config"]["seed"] = 1
    results["accuracy"] = round(results["accuracy"] - 0.05, 6)
    (copy / "results.json").write_text(json.dumps(results))

    config = grid.base_config()
    config.dataset, config.data_dir = MINI, data_dir
    config.rows, config.n_jobs, config.time_budget_s = CLASSICAL_ROWS, 1, 0.0
    config.train_subsample = CLASSICAL_TRAIN
    grid.run(config, str(runs_dir / "classical_v2_mini"))
    return {"dir": runs_dir, "data_dir": data_dir,
            "deep": [lenet, copy, planned[1].workdir]}


def _accuracy(workdir: Path) -> float:
    return json.loads((workdir / "results.json").read_text())["accuracy"]


def _figures(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_report_renders_every_section_from_real_runs(runs, tmp_path):
    out = tmp_path / "report"
    path = report.build_report(runs["dir"], out, data_dir=runs["data_dir"], max_points=120)
    md = path.read_text()

    # Loud banner first, then a synthetic caption in every section that holds the results.
    assert md.index(BANNER) < md.index("## Table 2")
    assert "5 of the 5 results" in md  # 3 deep runs + 2 classical configurations
    assert md.count("⚠️ **SYNTHETIC DATA**") >= 6

    lenet = [_accuracy(w) for w in runs["deep"][:2]]
    simple = _accuracy(runs["deep"][2])
    mean, std = np.mean(lenet), np.std(lenet, ddof=1)
    published = paper.deep_accuracy("lenet", MINI)
    assert f"| LeNet (28) | {mean:.3f} ± {std:.3f} (n=2) | {published:.3f} | " \
           f"{mean - published:+.3f} |" in md
    assert f"| SimpleCNN1 (28) | {simple:.3f} (n=1) |" in md
    average = np.mean([mean, simple])
    assert f"| **average over models** | {average:.3f} (2 models) |" in md
    assert "**variance over models**" in md

    table = paper.classical_accuracy(MINI)
    rows = {r["row"]: r for r in paper.table1_1_classical()}
    for index in CLASSICAL_ROWS:
        key = paper.params_key(rows[index]["classifier"], rows[index]["params"])
        assert re.search(rf"\| {index} \| {rows[index]['classifier']} \| .* \| "
                         rf"{table[key]:.3f} \| [+-]\d\.\d{{3}} \| ok \|", md)

    assert f"trained on {CLASSICAL_TRAIN} examples (a stratified subsample" in md

    for name in ("F", "G", "K"):
        assert re.search(rf"\| LeNet \(28\) \| {name} \| \d\.\d{{3}} ± ", md)
    for section in ("## Table 2", "## Tables 1-1 and 1-2", "## Confusion matrices",
                    "## The datasets: PCA and t-SNE", "## Training curves",
                    "## Throughput and wall time"):
        assert section in md
    assert "No runs found" not in md and "Could not load" not in md

    figures = _figures(md)
    prefixes = {"table2_", "classical_", "confusion_", "embedding_", "curves_", "throughput"}
    assert {p for p in prefixes if any(f.startswith(p) for f in figures)} == prefixes
    for name in figures:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert not list(out.glob(".*.tmp"))  # every write was completed and renamed

    data = json.loads((out / "report.json").read_text())
    assert data["synthetic"] is True
    lenet_row = next(r for r in data["deep"] if r["model"] == "lenet")
    assert lenet_row["seeds"] == [0, 1] and lenet_row["n"] == 2
    assert data["embeddings"][MINI]["points"] == 120


def test_real_data_has_no_banner_and_mixed_data_is_flagged(runs, tmp_path, capsys):
    real = tmp_path / "real"
    for index, workdir in enumerate(runs["deep"]):
        target = real / f"run{index}"
        shutil.copytree(workdir, target, ignore=shutil.ignore_patterns("checkpoints"))
        results = json.loads((target / "results.json").read_text())
        results["dataset"] = results["config"]["dataset"] = "astrospectra_mnist/v2"
        results["synthetic"] = False
        (target / "results.json").write_text(json.dumps(results))
    out = tmp_path / "out"
    assert report.main(["--runs", str(real), "--out", str(out), "--no-embeddings"]) == 0
    assert f"wrote {out / 'report.md'}" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    assert "SYNTHETIC" not in md and "⚠️" not in md
    assert "| model (input) | `astrospectra_mnist/v2` ours | paper | Δ |" in md
    assert json.loads((out / "report.json").read_text())["synthetic"] is False

    shutil.copytree(runs["deep"][2], real / "synthetic_run",
                    ignore=shutil.ignore_patterns("checkpoints"))
    report.main(["--runs", str(real), "--out", str(out), "--no-embeddings"])
    md = (out / "report.md").read_text()
    assert BANNER in md and "1 of the 4 results" in md
    assert f"`{MINI}` ⚠️SYNTHETIC ours" in md
    assert "`astrospectra_mnist/v2` ours" in md  # the real column keeps no mark


def test_empty_folder_renders_with_notes_and_lists_failed_runs(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    empty = report.build_report(runs_dir, tmp_path / "empty").read_text()
    assert "No runs found for Table 2" in empty and "No classical runs found" in empty
    assert "No deep runs found" in empty and "no datasets to map" in empty
    assert "SYNTHETIC" not in empty and "## Runs without results" not in empty

    planned = suite.plan([MINI], "lenet", [0], runs_dir)
    failing = dataclasses.replace(planned[0], command=(
        sys.executable, "-c", "raise SystemExit('disk full')"))
    suite.execute([failing], progress=False)
    (runs_dir / "by_hand" / "checkpoints" / "40").mkdir(parents=True)  # main.py, stopped
    md = report.build_report(runs_dir, tmp_path / "out").read_text()
    assert "## Runs without results" in md
    assert "| by_hand | unfinished | checkpoints but no results.json |" in md
    assert re.search(rf"\| {re.escape(failing.name)} \| failed \| exit status 1 \| "
                     rf"`{re.escape(str(failing.log))}` \|", md)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["figures"] == []


def test_unreadable_and_older_records_are_named(tmp_path):
    runs_dir = tmp_path / "runs"
    (runs_dir / "old_grid").mkdir(parents=True)
    (runs_dir / "old_grid" / results.CLASSICAL_CSV).write_text("row,classifier\n")
    (runs_dir / "broken").mkdir()
    (runs_dir / "broken" / results.RESULTS_JSON).write_text('{"model": "lenet"}')
    md = report.build_report(runs_dir, tmp_path / "out", embeddings=False).read_text()
    assert "No runs found for Table 2" in md and "No classical runs found" in md
    assert f"old_grid/{results.CLASSICAL_CSV}`: no {results.CLASSICAL_JSON} beside it" in md
    assert f"broken/{results.RESULTS_JSON}: missing field(s) dataset, accuracy" in md


def test_resumed_runs_keep_the_last_record_of_a_step(tmp_path):
    lines = [{"split": "train", "step": 2, "loss": 1.0, "accuracy": 0.4},
             {"split": "test", "step": 4, "loss": 0.9, "accuracy": 0.5},
             {"split": "train", "step": 4, "loss": 0.8, "accuracy": 0.6},
             {"split": "test", "step": 4, "loss": 0.7, "accuracy": 0.55}]  # after a resume
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\nnot json\n")
    train, test = collect.read_curves(path)
    assert train == {"step": [2, 4], "loss": [1.0, 0.8], "accuracy": [0.4, 0.6]}
    assert test == {"step": [4], "loss": [0.7], "accuracy": [0.55]}


def test_missing_runs_folder_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        report.main(["--runs", str(tmp_path / "nowhere")])
    assert "nowhere: no such folder" in capsys.readouterr().err
