"""predict on a tiny trained run: PNGs, the Kaggle layout, line vectors, real FITS, bad files;
the atomic CSV; cross-dataset evaluation (config.eval_datasets) in results.json."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from astrospectra_jax import predict
from astrospectra_jax.data import catalogue, layout, sources

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the configs/ folder, as when running main.py from the repo

from configs.base import get_base_config  # noqa: E402

IMAGE_DATASET = "astrospectra_mnist/v1_synthetic_mini"  # STAR / GALAXY / QSO, like SDSS
LINE_DATASET = "line_astro_spectra/v1_synthetic_mini"
CLASSES = ["STAR", "GALAXY", "QSO"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A small converted synthetic folder: Kaggle layout (40 + 20 PNGs) and line vectors."""
    out = tmp_path_factory.mktemp("converted")
    sources.convert_synthetic(out, "v1", 40, 20, seed=7, progress=False)
    return out


def _train(tmp_path_factory, dataset: str, model: str, **fields) -> tuple[Path, dict]:
    from astrospectra_jax.training import train

    data_dir = tmp_path_factory.getbasetemp() / "tfds"
    config = get_base_config()
    config.update_from_flattened_dict({
        "dataset": dataset, "data_dir": str(data_dir), "model.name": model,
        "model.input_size": 721 if model == "conv1d" else 28, "batch_size": 32,
        "num_epochs": 1, "max_steps": 8, "steps_per_call": 1, "checkpoint_every_steps": 8,
        "log_every_steps": 4, "eval_every_epochs": 0, **fields})
    workdir = tmp_path_factory.mktemp(model)
    return workdir, train.train_and_evaluate(config, str(workdir))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory, converted) -> tuple[Path, dict]:
    no_spectra = tmp_path_factory.mktemp("no_spectra")
    (no_spectra / "notes.txt").write_text("nothing to evaluate here")
    return _train(tmp_path_factory, IMAGE_DATASET, "lenet",
                  eval_datasets=f"{IMAGE_DATASET},{converted},{no_spectra}")


@pytest.fixture(scope="module")
def line_run(tmp_path_factory) -> tuple[Path, dict]:
    return _train(tmp_path_factory, LINE_DATASET, "conv1d")


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def run_predict(workdir, inputs, out, capsys) -> tuple[int, str, str]:
    code = predict.main(["--workdir", str(workdir), "--input", *map(str, inputs),
                         "--out", str(out), "--no-progress", "--batch-size", "16"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_eval_datasets_add_a_section_per_dataset(image_run, converted):
    workdir, results = image_run
    sections = dict(results["eval_datasets"])
    empty = [name for name in sections if "no_spectra" in name]
    assert len(empty) == 1 and "no usable image input" in sections.pop(empty[0])["error"]
    assert set(sections) == {IMAGE_DATASET, str(converted)}
    own = sections[IMAGE_DATASET]  # the run's own test split, evaluated a second way
    assert own["accuracy"] == pytest.approx(results["accuracy"])
    assert own["confusion_matrix"] == results["confusion_matrix"]
    folder = sections[str(converted)]
    assert folder["examples"] == 60 and folder["split"] == "all" and folder["synthetic"]
    assert sum(map(sum, folder["confusion_matrix"])) == 60
    on_disk = json.loads((workdir / "results.json").read_text())
    assert set(on_disk["eval_datasets"]) == set(sections) | set(empty)
    assert len(list(workdir.glob("confusion_matrix_*.png"))) == 2


def test_predictions_restore_the_trained_weights(image_run):
    workdir, results = image_run
    run = predict.load_run(workdir)
    features, labels = catalogue.load_arrays(IMAGE_DATASET, "test",
                                             data_dir=run.config.data_dir)
    probabilities = predict.predict_probabilities(run, features, 64, progress=False)
    assert probabilities.shape == (len(labels), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    assert accuracy == pytest.approx(results["accuracy"])


def test_kaggle_layout_and_pngs_with_bad_files_listed(image_run, converted, tmp_path, capsys):
    workdir, _ = image_run
    kaggle = layout.kaggle_dir(converted, "v1")
    loose = tmp_path / "one.png"
    loose.write_bytes((layout.images_dir(kaggle, "test", "v1") / "synthetic_v1_test_000000.png")
                      .read_bytes())
    broken_png = tmp_path / "broken.png"
    broken_png.write_bytes(b"not a png")
    broken_fits = tmp_path / "short.fits"
    broken_fits.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    out = tmp_path / "preds.csv"
    code, stdout, stderr = run_predict(
        workdir, [converted, loose, broken_png, broken_fits, notes, tmp_path / "absent"], out,
        capsys)
    assert code == 0
    rows = read_rows(out)
    assert len(rows) == 61  # 40 + 20 in the layout, one loose PNG
    assert list(rows[0]) == ["id", "file", "predicted", "p_STAR", "p_GALAXY", "p_QSO",
                             "true_class", "ood_score", "outside_classes"]
    assert sum(r["true_class"] == "" for r in rows) == 1
    for name in ("broken.png", "short.fits", "notes.txt", "absent"):
        assert name in stderr
    assert "ignored 2 line-vector .npz files" in stderr
    report = json.loads((tmp_path / "preds.metrics.json").read_text())
    labelled = [r for r in rows if r["true_class"]]
    assert report["examples"] == 60 and report["skipped"] == 4
    assert report["accuracy"] == pytest.approx(
        np.mean([r["predicted"] == r["true_class"] for r in labelled]))
    assert (tmp_path / "preds.confusion_matrix.png").stat().st_size > 0
    assert f"accuracy {report['accuracy']:.3f}" in stdout


def test_line_run_reads_line_vectors_and_refuses_images(line_run, converted, tmp_path, capsys):
    workdir, _ = line_run
    png = next(layout.images_dir(layout.kaggle_dir(converted, "v1"), "test", "v1").glob("*.png"))
    out = tmp_path / "preds.csv"
    code, _, stderr = run_predict(workdir, [converted, png], out, capsys)
    assert code == 0
    rows = read_rows(out)
    assert len(rows) == 60 and all(r["true_class"] in CLASSES for r in rows)
    assert "ignored 60 PNG images" in stderr and "cannot feed a line model" in stderr
    probabilities = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_real_fits_from_both_surveys(image_run, shared_dir, tmp_path, capsys):
    sdss = sorted((shared_dir / "data" / "sdss").glob("spec-*.fits"))[:4]
    lamost = sorted((shared_dir / "data" / "lamost" / "dr10").glob("*.fits*"))[:2]
    if len(sdss) < 4 or len(lamost) < 2:
        pytest.skip("../shared/data/sdss or lamost/dr10 holds too few files")
    out = tmp_path / "real.csv"
    code, _, _ = run_predict(image_run[0], [*sdss, *lamost], out, capsys)
    assert code == 0
    rows = read_rows(out)
    assert [r["id"] for r in rows[:4]] == [p.name.removesuffix(".fits") for p in sdss]
    assert all(r["true_class"] in CLASSES for r in rows)  # SDSS's CLASS, LAMOST's CLASS
    assert [r["true_class"] for r in rows[4:]] == ["STAR", "STAR"]


def test_no_usable_input_fails_and_writes_nothing(image_run, tmp_path, capsys):
    bad = tmp_path / "bad.fits"
    bad.write_bytes(b"\x1f\x8b truncated gzip")
    with pytest.raises(SystemExit) as info:
        run_predict(image_run[0], [bad], tmp_path / "preds.csv", capsys)
    assert info.value.code == 2
    assert "bad.fits" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [bad]


def test_not_a_run_is_a_clean_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run_predict(tmp_path, [tmp_path], tmp_path / "preds.csv", capsys)
    assert info.value.code == 2
    assert "not a main.py workdir" in capsys.readouterr().err


def test_interrupted_predict_leaves_no_csv(image_run, converted, tmp_path, capsys, monkeypatch):
    real_writer = csv.writer

    class InterruptedWriter:
        def __init__(self, f):
            self.writer = real_writer(f)

        def writerow(self, row):
            self.writer.writerow(row)

        def writerows(self, rows):
            self.writer.writerow(next(iter(rows)))
            raise KeyboardInterrupt  # Ctrl-C halfway through the rows

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    monkeypatch.setattr(predict.csv, "writer", InterruptedWriter)
    with pytest.raises(KeyboardInterrupt):
        run_predict(image_run[0], [converted], out_dir / "preds.csv", capsys)
    assert list(out_dir.iterdir()) == []


def test_report_shows_the_across_dataset_table(image_run, converted, tmp_path):
    from astrospectra_jax.report import build

    workdir, results = image_run
    md = build.build_report(workdir, tmp_path / "report", embeddings=False).read_text()
    assert "## Across datasets (simulated -> real)" in md
    section = results["eval_datasets"][str(converted)]
    assert f"| {section['examples']} | {section['accuracy']:.3f} |" in md
    assert md.index("## Table 2") < md.index("## Across datasets")
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert len(data["across_datasets"]) == 3  # the empty folder's row says "—"


@pytest.mark.parametrize("value, message", [
    ("line_astro_spectra/v1_synthetic_mini", "holds line data"),
    ("astrospectra_mnist/v2_synthetic_mini", "classes F, G, K"),
    ("no/such/folder", "neither a known dataset nor a folder"),
])
def test_eval_datasets_are_validated_naming_the_field(value, message):
    from astrospectra_jax.training import train

    config = get_base_config()
    config.dataset, config.model.name = IMAGE_DATASET, "lenet"
    config.eval_datasets = f"{IMAGE_DATASET}, {value}"
    with pytest.raises(train.ConfigError, match="config.eval_datasets") as info:
        train.validate(config)
    assert message in str(info.value)


def test_predict_leaves_the_run_folder_untouched(image_run, converted, tmp_path, capsys):
    workdir = image_run[0]

    def snapshot():
        return sorted((str(p.relative_to(workdir)), p.stat().st_mtime_ns)
                      for p in workdir.rglob("*"))

    before = snapshot()
    code, _, _ = run_predict(workdir, [converted], tmp_path / "preds.csv", capsys)
    assert code == 0 and snapshot() == before
