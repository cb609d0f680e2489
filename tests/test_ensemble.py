"""Ensembles (config.ensemble_size): member k is the single run with seed + k, for an image
model and the 1-D CNN; members on different devices (a "member" mesh axis) or mapped on each
device agree on 8 simulated devices; a stopped ensemble resumes exactly; results.json, the
metric curves and predict's ensemble columns."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from astrospectra_jax import predict
from astrospectra_jax.data import catalogue
from astrospectra_jax.training import ensemble, train
from astrospectra_jax.training.configuration import ConfigError

from tests.test_train import (LINE_DATASET, REPO, checkpoint_steps, restore_state, run_env,
                              tiny_config)

DATASET = "astrospectra_mnist/v1_synthetic_mini"
SEED, K = 5, 3
MEMBER = 2  # compared with the single run of seed SEED + MEMBER


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tfds")
    for name in (DATASET, LINE_DATASET):
        catalogue.load_arrays(name, "train", data_dir=str(folder))
    return str(folder)


# Plain SGD: parameters move linearly with the gradients, so the last-bit differences of sums
# that XLA reassociates (a member's step compiled inside lax.map or shard_map) stay last-bit.
# Adam divides each gradient by its own magnitude: on near-zero gradients those bits become
# update differences of up to 2 x the learning rate (seen: 4e-4 on a Conv1D kernel, 6 steps).
SGD = {"optimizer.name": "sgd", "optimizer.learning_rate": 0.1, "schedule": "constant"}


# Conv1D amplifies those last bits ~15-fold a step from its 4th step on (member vs single run,
# SGD, train loss: equal to 1.2e-7 for steps 1-3, then 5e-5, 8e-4, 4e-3; likewise under Adam or
# at learning rate 0.01), so its member is compared after 2 steps.
LINE_STEPS = {"max_steps": 2, "checkpoint_every_steps": 2}


def config_for(data_dir: str, line: bool, **overrides):
    fields = {"dataset": DATASET, "max_steps": 6, "steps_per_call": 2, "checkpoint_every_steps": 4,
              "log_every_steps": 2, "seed": SEED, "validation_fraction": 0.0, **SGD}
    if line:
        fields.update({"dataset": LINE_DATASET, "model.name": "conv1d", "model.input_size": 721})
    return tiny_config(data_dir, **{**fields, **overrides})


@pytest.fixture(scope="module")
def runs(data_dir, tmp_path_factory) -> dict:
    """For image and line: a K=3 ensemble run and the single run of seed SEED + MEMBER."""
    found = {}
    for line in (False, True):
        kind = "line" if line else "image"
        for name, fields in (("ensemble", {"ensemble_size": K}),
                             ("single", {"seed": SEED + MEMBER})):
            workdir = tmp_path_factory.mktemp(f"{kind}_{name}")
            found[kind, name] = (workdir, train.train_and_evaluate(
                config_for(data_dir, line, **fields, **(LINE_STEPS if line else {})),
                str(workdir)))
    return found


def test_results_json_holds_members_and_their_ensemble(runs):
    workdir, results = runs["image", "ensemble"]
    assert json.loads((workdir / "results.json").read_text())["members"] == results["members"]
    assert [m["seed"] for m in results["members"]] == [SEED, SEED + 1, SEED + 2]
    assert results["member_axis"] == "map" and results["ensemble_size"] == K
    assert results["kernels"] in ("cpu", "xla")
    accuracies = [m["accuracy"] for m in results["members"]]
    assert results["accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert results["accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert results["accuracy"] == results["ensemble"]["accuracy"]  # top level: the ensemble's
    assert results["test_loss"] == results["ensemble"]["test_loss"]
    for member in results["members"]:
        assert set(member) >= {"seed", "accuracy", "test_loss", "per_class", "confusion_matrix"}
    lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    splits = {x["split"] for x in lines}
    assert {"train", "test"} | {f"train_member_{k}" for k in range(K)} <= splits


@pytest.mark.parametrize("kind", ["image", "line"])
def test_member_k_is_the_single_run_with_seed_plus_k(runs, kind):
    (ens_dir, ens), (one_dir, one) = runs[kind, "ensemble"], runs[kind, "single"]
    member = ens["members"][MEMBER]
    assert member["seed"] == one["seed"] == SEED + MEMBER
    assert member["accuracy"] == one["accuracy"]
    assert member["confusion_matrix"] == one["confusion_matrix"]
    assert member["test_loss"] == pytest.approx(one["test_loss"], rel=1e-5)
    # To float tolerance (see SGD): the member's step is compiled inside lax.map, where XLA:CPU
    # runs the convolutions' gradients another way (one step: 4e-7 absolute, 3e-5 of the
    # leaf's largest, on a Conv1D batch-norm scale; forward statistics identical).
    last = LINE_STEPS["max_steps"] if kind == "line" else 6
    stacked, single = restore_state(ens_dir, last), restore_state(one_dir, last)
    for path, a in jax.tree.leaves_with_path(single):  # params, batch norm, dropout RNG state
        b = stacked
        for key in path:
            b = b[key.key if hasattr(key, "key") else key.idx]
        np.testing.assert_allclose(b[MEMBER], a, rtol=1e-5, atol=1e-6,
                                   err_msg=jax.tree_util.keystr(path))
    # The same test predictions, and predict's ensemble columns.
    features, _ = catalogue.load_arrays(ens["dataset"], "test",
                                        data_dir=ens["config"]["data_dir"])
    members = predict.predict_probabilities(predict.load_run(ens_dir), features, progress=False)
    alone = predict.predict_probabilities(predict.load_run(one_dir), features, progress=False)
    assert members.shape == (K, *alone.shape)
    np.testing.assert_array_equal(members[MEMBER].argmax(-1), alone.argmax(-1))
    np.testing.assert_allclose(members[MEMBER], alone, atol=1e-5)


def test_uncertainty_of_agreeing_and_disagreeing_members():
    sure = np.array([[0.9, 0.05, 0.05]])
    agree = ensemble.uncertainty(np.stack([sure, sure]))
    assert agree["disagreement"][0] == pytest.approx(0.0, abs=1e-12)
    assert agree["p_std"][0] == pytest.approx(0.0)
    split = ensemble.uncertainty(np.array([[[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]]]))
    assert split["disagreement"][0] == pytest.approx(np.log(2))  # one bit, in nats
    np.testing.assert_allclose(split["probabilities"], [[0.5, 0.5, 0.0]])
    assert split["p_std"][0] == pytest.approx(0.5)


def test_tfdata_ensemble_is_refused_naming_both_fields(data_dir, tmp_path):
    config = config_for(data_dir, False, ensemble_size=2, input_pipeline="tfdata")
    with pytest.raises(ConfigError, match=r"ensemble_size=2.*input_pipeline"):
        train.train_and_evaluate(config, str(tmp_path))


def test_stopped_ensemble_resumes_exactly(runs, data_dir, tmp_path):
    """Stopped after the checkpoint of step 4 (max_steps), rerun to 6: bit-identical to the
    uninterrupted ensemble."""
    train.train_and_evaluate(config_for(data_dir, False, ensemble_size=K, max_steps=4), tmp_path)
    assert checkpoint_steps(tmp_path) == [4]
    resumed = train.train_and_evaluate(config_for(data_dir, False, ensemble_size=K), tmp_path)
    assert resumed["resumed_from_step"] == 4
    reference_dir, reference = runs["image", "ensemble"]
    assert resumed["members"] == [{**m} for m in reference["members"]]
    for a, b in zip(jax.tree.leaves(restore_state(tmp_path, 6)),
                    jax.tree.leaves(restore_state(reference_dir, 6)), strict=True):
        np.testing.assert_array_equal(a, b)


def test_eight_devices_members_on_devices_or_mapped_agree(runs, data_dir, tmp_path):
    """On 8 simulated devices: K=4 goes to a ("member", "data") mesh of 4 x 2 devices, K=3
    (8 is no multiple) is mapped on each device with the batch sharded over all 8; every
    member matches the one-device ensemble's to float tolerance (plain SGD, see SGD).

    One step from one state (SimpleCNN2, K=4) gives gradients within 1.3e-6 absolute (7e-6 of
    each leaf's largest) of the mapped ensemble's and of each seed's single run, and batch-norm
    statistics within 1.2e-7: reassociated sums of global-batch quantities. A reduction
    missing over "data" (gradients or statistics of half the batch) would differ by tens of
    percent."""
    reference_dir, reference = runs["image", "ensemble"]
    fields = {"dataset": DATASET, "data_dir": data_dir, "model.name": "lenet", "batch_size": 32,
              "num_epochs": 1, "max_steps": 6, "steps_per_call": 2, "checkpoint_every_steps": 4,
              "log_every_steps": 2, "seed": SEED, "validation_fraction": 0.0, **SGD}
    found = {}
    for size in (4, 3):
        workdir = tmp_path / f"k{size}"
        command = ([sys.executable, str(REPO / "main.py"),
                    f"--config={REPO / 'configs/quickstart.py'}", f"--workdir={workdir}"]
                   + [f"--config.{k}={v}" for k, v in {**fields, "ensemble_size": size}.items()])
        done = subprocess.run(command, cwd=REPO, env=run_env(8), text=True, capture_output=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        found[size] = workdir, json.loads((workdir / "results.json").read_text())
    assert found[4][1]["member_axis"] == "mesh" and found[3][1]["member_axis"] == "map"
    assert found[4][1]["devices"]["count"] == 8
    expected = restore_state(reference_dir, 6)
    for size, (workdir, results) in found.items():
        for k in range(K):
            got, want = results["members"][k], reference["members"][k]
            assert got["seed"] == want["seed"]
            assert got["accuracy"] == want["accuracy"]
            assert got["test_loss"] == pytest.approx(want["test_loss"], rel=1e-5)
        state = restore_state(workdir, 6)
        for part in ("params", "model_state"):
            for path, a in jax.tree.leaves_with_path(expected[part]):
                b = state[part]
                for key in path:
                    b = b[key.key if hasattr(key, "key") else key.idx]
                np.testing.assert_allclose(b[:K], a, rtol=1e-5, atol=1e-6,
                                           err_msg=f"K={size} {jax.tree_util.keystr(path)}")


def test_report_expands_an_ensemble_into_its_seeds(runs, tmp_path):
    from astrospectra_jax.report import collect, tables

    workdir, results = runs["image", "ensemble"]
    copy = tmp_path / "runs" / "lenet_ensemble"
    copy.mkdir(parents=True)
    for name in ("results.json", "metrics.jsonl"):
        (copy / name).write_text((workdir / name).read_text())
    found, problems = collect.find_deep_runs(tmp_path / "runs")
    assert not problems and [r.seed for r in found] == [SEED, SEED + 1, SEED + 2]
    assert [r.results["accuracy"] for r in found] == [m["accuracy"] for m in results["members"]]
    assert all(r.train["step"] and r.train["loss"] for r in found)  # each member's curve
    (row,) = tables.aggregate(found)
    assert row["n"] == K and row["mean"] == pytest.approx(results["accuracy_mean"])
    assert row["std"] == pytest.approx(results["accuracy_std"])
