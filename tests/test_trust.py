"""Trust at the end of training and in predict / explain (issue #24, phase 2): the validation
hold-out, calibration and OOD records in results.json, outlier exposure's K+1 outputs, predict's
ood_score / outside_classes columns and --no-flag, another task's Kaggle layout not scored."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from astrospectra_jax import explain, predict
from astrospectra_jax.data import catalogue, sources
from astrospectra_jax.training import trust_fit
from astrospectra_jax.training.configuration import ConfigError
from astrospectra_jax.trust import fit as trust

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from configs.base import get_base_config  # noqa: E402

DATASET = "astrospectra_mnist/v2_synthetic_mini"  # 1200 train (400 a class) / 300 test


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tfds")
    catalogue.load_arrays(DATASET, "train", data_dir=str(folder))
    return str(folder)


def tiny_config(data_dir: str, **overrides):
    config = get_base_config()
    config.update_from_flattened_dict({
        "dataset": DATASET, "data_dir": data_dir, "model.name": "lenet", "batch_size": 32,
        "num_epochs": 1, "max_steps": 6, "steps_per_call": 1, "checkpoint_every_steps": 6,
        "log_every_steps": 3, "eval_every_epochs": 0, **overrides})
    return config


def train(tmp_path_factory, data_dir, name, **overrides) -> tuple[Path, dict]:
    from astrospectra_jax.training import train as training

    workdir = tmp_path_factory.mktemp(name)
    return workdir, training.train_and_evaluate(tiny_config(data_dir, **overrides), str(workdir))


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory, data_dir):
    return train(tmp_path_factory, data_dir, "calibrated")  # validation_fraction 0.1


@pytest.fixture(scope="module")
def exposure_run(tmp_path_factory, data_dir):
    return train(tmp_path_factory, data_dir, "exposure", **{"outlier_exposure.fraction": 0.25})


def run_predict(workdir, inputs, out, capsys, *extra) -> tuple[int, str, str]:
    try:
        code = predict.main(["--workdir", str(workdir), "--input", *map(str, inputs), "--out",
                             str(out), "--no-progress", *extra])
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_results_hold_calibration_and_ood(calibrated_run):
    workdir, results = calibrated_run
    saved = json.loads((workdir / "results.json").read_text())
    assert saved["train_examples"] == 1080  # 10% of each class of 1200 held out
    cal = saved["calibration"]
    assert cal["temperature"] > 0 and cal["bins"] == 15 and cal["validation_examples"] == 120
    assert 0 <= cal["ece_before"] <= 1 and 0 <= cal["ece_after"] <= 1
    ood = saved["ood"]
    assert ood["method"] == "mahalanobis" and ood["chosen"] == "auto"
    assert ood["kept"] == 0.95 and np.isfinite(ood["threshold"])
    assert 0 <= ood["test_flagged"] <= 0.3
    assert (workdir / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert trust.ood.OODDetector.load_npz(workdir / "ood.npz").threshold == ood["threshold"]


def test_validation_fraction_zero_records_null_with_a_reason(tmp_path_factory, data_dir, capsys):
    workdir, results = train(tmp_path_factory, data_dir, "nothing_held", validation_fraction=0.0)
    assert results["train_examples"] == 1200
    assert results["calibration"] is None and results["ood"] is None
    assert "validation_fraction=0.0" in results["trust_skipped"]
    assert not (workdir / "ood.npz").exists()
    converted = workdir.parent / "converted_nothing"
    sources.convert_synthetic(converted, "v2", 4, 4, seed=3, progress=False)
    out = workdir.parent / "nothing.csv"
    code, _, err = run_predict(workdir, [converted], out, capsys)
    assert code == 0 and "fitted no OOD detector" in err
    assert "ood_score" not in read_rows(out)[0]


def test_outlier_exposure_has_k_plus_1_outputs_and_predict_flags(exposure_run, data_dir,
                                                                 tmp_path, capsys):
    workdir, results = exposure_run
    assert results["ood"]["method"] == "outlier_exposure"
    assert results["train_examples"] == 1080 + 270  # a quarter as many simulated outliers
    assert results["confusion_matrix"] and len(results["confusion_matrix"]) == 3
    run = predict.load_run(workdir)
    features, labels = catalogue.load_arrays(DATASET, "test", data_dir=data_dir)
    from astrospectra_jax.training import sharding

    logits, _, members = trust_fit.model_outputs(run.graphdef, run.model, run.config, run.spec,
                                                 features[:10], 8, sharding.make_mesh())
    assert logits.shape == (10, 4) and members is None
    probs, scores, outside, members = predict.predict_trusted(run, features)
    assert probs.shape == (300, 3) and scores.shape == (300,) and outside.dtype == bool
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert float(np.mean(probs.argmax(1) == labels)) == pytest.approx(results["accuracy"])
    assert float(np.mean(outside)) == pytest.approx(results["ood"]["test_flagged"])

    converted = tmp_path / "converted"
    sources.convert_synthetic(converted, "v2", 10, 10, seed=3, progress=False)
    out = tmp_path / "preds.csv"
    code, stdout, _ = run_predict(workdir, [converted], out, capsys)
    rows = read_rows(out)
    assert code == 0 and len(rows) == 20
    assert list(rows[0])[-2:] == ["ood_score", "outside_classes"]
    assert {r["outside_classes"] for r in rows} <= {"0", "1"}
    assert "outside the classes (outlier_exposure" in stdout and "by true class:" in stdout
    report = json.loads((tmp_path / "preds.metrics.json").read_text())
    by_class = report["outside_classes"]["flagged_by_true_class"]
    assert sum(n for _, n in by_class.values()) == 20

    code, stdout, _ = run_predict(workdir, [converted], out, capsys, "--no-flag")
    assert code == 0 and "ood_score" not in read_rows(out)[0]
    assert "outside the classes" not in stdout


def test_kaggle_layout_of_another_task_is_not_scored(exposure_run, tmp_path, capsys):
    workdir, _ = exposure_run  # a v2 (F/G/K) model
    converted = tmp_path / "v1"
    sources.convert_synthetic(converted, "v1", 6, 4, seed=5, progress=False)
    code, _, err = run_predict(workdir, [converted], tmp_path / "p.csv", capsys)
    assert code == 2 and "no usable input" in err  # every input skipped, none scored
    assert "a Kaggle layout of task v1 (STAR / GALAXY / QSO); the model classifies v2" in err
    assert "not scored" in err


def test_explain_uses_the_run_as_predict_loads_it(exposure_run, tmp_path):
    workdir, results = exposure_run
    loaded = explain.load_model(workdir)
    assert f"T={results['calibration']['temperature']:.3f}" in loaded.description
    converted = tmp_path / "v2"
    sources.convert_synthetic(converted, "v2", 4, 4, seed=9, progress=False)
    assert explain.main(["--workdir", str(workdir), "--input", str(converted), "--out",
                         str(tmp_path / "explained"), "--method", "gxi", "--no-progress"]) == 0
    with np.load(tmp_path / "explained" / "attributions.npz") as z:
        assert z["logits"].shape == (8, 3)  # the K classes, not "other"


def test_tfdata_holds_out_the_same_rows_as_the_device_pipeline(data_dir):
    from astrospectra_jax.training import sharding

    config = tiny_config(data_dir)
    keep, num_train, held = trust_fit.split_streamed(config, "image", sharding.make_mesh())
    _, labels = catalogue.load_arrays(DATASET, "train", data_dir=data_dir)
    train_idx, val_idx = trust.holdout(labels, 0.1, config.seed)
    np.testing.assert_array_equal(np.flatnonzero(keep), train_idx)
    np.testing.assert_array_equal(held.validation.labels, labels[val_idx])
    assert num_train == len(train_idx) == 1080


@pytest.mark.parametrize("fields, message", [
    ({"validation_fraction": 1.0}, "config.validation_fraction=1.0 must lie in [0, 1)"),
    ({"ood_method": "outlier_exposure"}, "needs config.outlier_exposure.fraction > 0"),
    ({"ood_method": "vibes"}, "config.ood_method='vibes' must be one of"),
    ({"outlier_exposure.fraction": 0.2, "dataset": "astrospectra_mnist/v1_synthetic_mini"},
     "needs a v2 (F/G/K) dataset"),
    ({"outlier_exposure.fraction": 0.2, "input_pipeline": "tfdata"}, "'device' pipeline only"),
])
def test_trust_fields_are_checked(fields, message):
    config = tiny_config("/nonexistent", **fields)
    with pytest.raises(ConfigError, match=re.escape(message)):
        trust_fit.check(config, catalogue.info(config.dataset))


def test_an_ensemble_is_calibrated_and_flagged_from_its_averaged_members(
        tmp_path_factory, data_dir, tmp_path, capsys):
    workdir, results = train(tmp_path_factory, data_dir, "ensemble_trust", ensemble_size=2)
    assert results["ensemble_size"] == 2 and results["calibration"]["temperature"] > 0
    assert results["ood"]["method"] == "mahalanobis"
    run = predict.load_run(workdir)
    features = catalogue.load_arrays(DATASET, "test", data_dir=data_dir)[0]
    probs, scores, outside, members = predict.predict_trusted(run, features)
    assert members.shape == (2, 300, 3) and probs.shape == (300, 3) and scores.shape == (300,)
    assert float(np.mean(probs.argmax(1) == members.mean(0).argmax(1))) > 0.95
    assert float(np.mean(outside)) == pytest.approx(results["ood"]["test_flagged"])

    converted = tmp_path / "converted"
    sources.convert_synthetic(converted, "v2", 6, 6, seed=3, progress=False)
    code, _, _ = run_predict(workdir, [converted], tmp_path / "p.csv", capsys)
    assert code == 0
    assert list(read_rows(tmp_path / "p.csv")[0])[-4:] == [
        "ood_score", "outside_classes", "disagreement", "p_std"]
