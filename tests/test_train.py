"""Training end to end on the small simulated dataset: outputs, exact resume after SIGKILL,
SIGTERM, 8 simulated devices, config validation, clean errors, the tf.data pipeline."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from astrospectra_jax.data import catalogue
from astrospectra_jax.training import (checkpointing, evaluation, input_pipeline, inputs, loop,
                                       sharding, train)
from astrospectra_jax.training.state import init_state
from astrospectra_jax.training import steps as training_steps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the configs/ folder, as when running main.py from the repo

from configs.base import get_base_config  # noqa: E402

DATASET = "astrospectra_mnist/v2_synthetic_mini"  # 1200 train / 300 test, built in seconds
LINE_DATASET = "line_astro_spectra/v2_synthetic_mini"
RESULT_FIELDS = ("accuracy", "per_class", "confusion_matrix", "class_names", "dataset",
                 "synthetic", "config", "seed", "devices", "git_commit", "wall_time_s",
                 "train_examples_per_s", "compile_time_s", "test_loss")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tfds")
    for name in (DATASET, LINE_DATASET):
        catalogue.load_arrays(name, "train", data_dir=str(folder))  # builds every split once
    return str(folder)


def tiny_config(data_dir: str, **overrides):
    config = get_base_config()
    config.dataset = DATASET
    config.data_dir = data_dir
    config.model.name = "lenet"
    config.batch_size = 32  # 37 steps per epoch
    config.num_epochs = 1
    config.max_steps = 12
    config.steps_per_call = 4
    config.checkpoint_every_steps = 8
    config.log_every_steps = 4
    config.validation_fraction = 0.0  # the whole split trains (counts below); see test_trust
    config.update_from_flattened_dict(overrides)
    return config


def checkpoint_steps(workdir: Path) -> list[int]:
    folder = workdir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


# ----------------------------------------------------------------------------- in process

@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted in-process run of ``run_fields`` (the workdir and its results)."""
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, train.train_and_evaluate(in_process_config(run_fields(data_dir)), workdir)


def test_train_writes_checkpoints_metrics_and_results(reference):
    workdir, results = reference  # 2 epochs of 37 steps, 2 steps per call
    assert checkpoint_steps(workdir) == [72, 74]  # every 4 steps, 2 kept, the final included
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["split"] == "train"]
    test_records = [r for r in records if r["split"] == "test"]
    assert [r["step"] for r in train_records] == [10, 20, 30, 40, 50, 60, 70, 74]
    assert all(np.isfinite(r["loss"]) and r["examples_per_s"] > 0 for r in train_records)
    assert [r["step"] for r in test_records] == [38, 74]  # after epoch 1 (chunk end), final
    assert list(workdir.glob("events.out.tfevents.*"))
    assert (workdir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    saved = json.loads((workdir / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    for field in RESULT_FIELDS:
        assert field in saved, field
    assert saved["synthetic"] is True and saved["dataset"] == DATASET
    assert saved["class_names"] == ["F", "G", "K"]
    matrix = np.array(saved["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 300
    assert saved["accuracy"] == pytest.approx(np.trace(matrix) / 300)
    assert saved["accuracy"] == pytest.approx(test_records[-1]["accuracy"])
    assert saved["accuracy"] > 0.5  # chance is 1/3
    assert saved["devices"]["count"] == jax.device_count()
    assert saved["config"]["model"]["name"] == "lenet" and saved["steps"] == 74
    assert saved["kernels"] == ("cpu" if jax.default_backend() == "cpu" else "xla")  # "auto"
    assert saved["train_examples_per_s"] > 0 and saved["compile_time_s"] > 0


def test_evaluation_masks_the_padding_of_the_last_batch(data_dir):
    """300 test examples in batches of 32 (the last padded by 20) give the same loss, accuracy
    and predictions as batches of 30 that divide the split exactly."""
    spec = catalogue.info(DATASET)
    mesh = sharding.make_mesh()
    results = {}
    for batch_size in (32, 30):
        config = tiny_config(data_dir, batch_size=batch_size)
        tx, _ = training_steps.make_optimizer(config, 37)
        graphdef, state = init_state(config, spec, tx, mesh)
        _, test = inputs.load(config, spec, mesh, 1)
        assert test.arrays[0].shape[0] == (320 if batch_size == 32 else 300)
        steps = training_steps.make_steps(config, spec, graphdef, tx, mesh, 37, 1200, 1)
        results[batch_size] = evaluation.evaluate(test, steps.eval_batch, state)
    padded, exact = results[32], results[30]
    assert len(padded["predictions"]) == 300
    np.testing.assert_array_equal(padded["predictions"], exact["predictions"])
    assert padded["accuracy"] == pytest.approx(np.mean(exact["predictions"] == exact["labels"]))
    assert padded["loss"] == pytest.approx(exact["loss"], rel=1e-5)


@pytest.mark.parametrize("field, value, message", [
    ("model.name", "resnet99", "config.model.name='resnet99' is not a known model; known: "),
    ("dataset", "mnist", "config.dataset='mnist' is not a known dataset; known: "),
    ("model.input_size", 224, "config.model.input_size=224 is not supported by model 'lenet'"),
    ("model.name", "conv1d", "is a line model but config.dataset="),
    ("model.dtype", "float16", "config.model.dtype='float16' must be one of"),
    ("model.kernels", "fast", "config.model.kernels='fast' must be one of auto, xla, cpu"),
    ("batch_size", 0, "config.batch_size=0 must be a positive integer"),
    ("num_epochs", 0, "config.num_epochs=0 must be a positive integer"),
    ("num_epochs", -2, "config.num_epochs=-2 must be a positive integer"),
    ("optimizer.name", "lamb", "config.optimizer.name='lamb' must be one of"),
    ("optimizer.learning_rate", 0.0, "config.optimizer.learning_rate=0.0 must be positive"),
    ("schedule", "linear", "config.schedule='linear' must be one of"),
    ("input_pipeline", "grain", "config.input_pipeline='grain' must be one of"),
    ("label_smoothing", 1.0, "config.label_smoothing=1.0 must be in [0, 1)"),
    ("checkpoint_every_steps", 0, "config.checkpoint_every_steps=0 must be a positive integer"),
    ("steps_per_call", -1, "config.steps_per_call=-1 must be a non-negative integer"),
    ("augment.max_shift", -1, "config.augment.max_shift=-1 must be >= 0"),
])
def test_invalid_config_is_refused_naming_the_field(data_dir, tmp_path, field, value, message):
    config = tiny_config(data_dir, **{field: value})
    with pytest.raises(train.ConfigError, match="invalid config") as error:
        train.train_and_evaluate(config, str(tmp_path))
    assert message in str(error.value)
    assert not (tmp_path / "checkpoints").exists()  # refused before anything was set up


def test_profile_steps_writes_a_profiler_trace(data_dir, tmp_path):
    train.train_and_evaluate(tiny_config(data_dir, profile_steps=4, eval_every_epochs=0),
                             str(tmp_path))
    assert list(tmp_path.glob("plugins/profile/*/*.xplane.pb"))


def test_line_dataset_needs_a_line_model(data_dir, tmp_path):
    config = tiny_config(data_dir, dataset="line_astro_spectra/v2_synthetic_mini")
    with pytest.raises(train.ConfigError, match="'lenet' is an image model but "
                                                "config.dataset='line_astro_spectra"):
        train.validate(config)


def test_batch_size_must_divide_over_devices_and_fit_the_split(data_dir, tmp_path):
    config = tiny_config(data_dir, batch_size=4096)
    with pytest.raises(train.ConfigError, match="batch_size=4096 exceeds the 1200 training"):
        train.train_and_evaluate(config, str(tmp_path))
    if jax.device_count() > 1:
        with pytest.raises(train.ConfigError, match="divisible by the number of devices"):
            train.validate(tiny_config(data_dir, batch_size=jax.device_count() + 1))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path):
    config = tiny_config(data_dir, steps_per_call=1, checkpoint_every_steps=1, max_steps=20,
                         **{"optimizer.learning_rate": 1e38})  # params overflow at step 2
    with pytest.raises(train.NonFiniteLossError, match=r"training loss is (nan|inf) at step \d+"
                       ) as error:
        train.train_and_evaluate(config, str(tmp_path))
    bad_step = int(str(error.value).split(" at step ")[1].split()[0])
    steps = checkpoint_steps(tmp_path)
    assert steps and max(steps) == bad_step - 1
    assert f"last good checkpoint is step {bad_step - 1}" in str(error.value)
    assert all(np.isfinite(p).all() for p in restore_params(tmp_path, max(steps)))
    assert not (tmp_path / "results.json").exists()


def line_config(data_dir: str, **overrides):
    """The 1-D CNN (batch norm and dropout) on line vectors: the state that must survive a
    resume is more than parameters and optimizer."""
    return tiny_config(data_dir, dataset=LINE_DATASET, **{"model.name": "conv1d",
                                                          "model.input_size": 721, **overrides})


def test_batch_norm_and_dropout_state_survive_a_checkpoint_exactly(data_dir, tmp_path):
    """Two chunks in a row, or one chunk, an Orbax save and restore, then the other: the same
    parameters, batch-norm statistics, dropout RNG state and optimizer state, bit for bit."""
    config = line_config(data_dir, steps_per_call=1)
    spec = catalogue.info(LINE_DATASET)
    mesh = sharding.make_mesh()
    tx, _ = training_steps.make_optimizer(config, 37)
    graphdef, state = init_state(config, spec, tx, mesh)
    data, _ = inputs.load(config, spec, mesh, 1)
    steps = training_steps.make_steps(config, spec, graphdef, tx, mesh, 37, 1200, 1)
    permutations = steps.epoch_permutations(np.int32(0))

    def chunk(state):
        state, metrics = steps.device_chunk(state, *data.arrays, permutations, np.int32(6))
        assert np.isfinite(jax.device_get(metrics["loss"])).all()
        return state

    halfway = chunk(state)
    manager = checkpointing.open_manager(tmp_path / "checkpoints", 2)
    checkpointing.save(manager, halfway, loop.progress(1, 37))
    manager.wait_until_finished()
    restored, step = checkpointing.restore_latest(manager, halfway)
    assert step == 1
    straight, resumed = jax.device_get(chunk(halfway)), jax.device_get(chunk(restored))
    key_data = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(  # noqa: E731
        x.dtype, jax.dtypes.prng_key) else x
    straight, resumed = jax.tree.map(key_data, straight), jax.tree.map(key_data, resumed)
    assert int(straight.step) == 2
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(a, b)
    named = {jax.tree_util.keystr(path): leaf
             for path, leaf in jax.tree.leaves_with_path(straight.model_state)}
    assert any("mean" in name and np.abs(leaf).max() > 0 for name, leaf in named.items())
    assert any("count" in name and leaf > 0 for name, leaf in named.items())  # dropout drew


def test_tfdata_pipeline_trains(data_dir, tmp_path):
    config = tiny_config(data_dir, input_pipeline="tfdata", max_steps=10, steps_per_call=3)
    results = train.train_and_evaluate(config, str(tmp_path))
    assert checkpoint_steps(tmp_path) == [9, 10]  # chunk ends 3, 6, 9 (crosses 8), 10
    assert np.array(results["confusion_matrix"]).sum() == 300
    assert results["config"]["input_pipeline"] == "tfdata"
    assert 0.0 <= results["accuracy"] <= 1.0 and np.isfinite(results["test_loss"])


def test_tfdata_batches_resume_where_they_left_off(data_dir):
    def stream(start):
        return input_pipeline.tfdata_train_batches(
            DATASET, data_dir=data_dir, feature_key="image", batch_size=100, seed=3,
            start_step=start, steps_per_epoch=12, shuffle_buffer=2000)

    from_start = stream(0)
    first = [next(from_start) for _ in range(15)]  # into the second epoch
    resumed = stream(10)
    for expected in first[10:]:
        features, labels = next(resumed)
        np.testing.assert_array_equal(features, expected[0])
        np.testing.assert_array_equal(labels, expected[1])
    epoch_labels = np.concatenate([labels for _, labels in first[:12]])
    assert len(epoch_labels) == 1200  # one whole epoch, no repeats
    assert not np.array_equal(first[0][1], first[12][1])  # reshuffled for epoch 2


# ----------------------------------------------------------------------------- main.py

def run_fields(data_dir: str, **overrides) -> dict:
    """Overrides of configs/quickstart.py for short runs through main.py (74 steps)."""
    return {"dataset": DATASET, "data_dir": data_dir, "model.name": "lenet", "batch_size": 32,
            "num_epochs": 2, "steps_per_call": 2, "checkpoint_every_steps": 4,
            "keep_checkpoints": 2, "log_every_steps": 10, "validation_fraction": 0.0,
            **overrides}


def main_command(workdir: Path, fields: dict) -> list[str]:
    return ([sys.executable, str(REPO / "main.py"), f"--config={REPO / 'configs/quickstart.py'}",
             f"--workdir={workdir}"] + [f"--config.{k}={v}" for k, v in fields.items()])


def in_process_config(fields: dict):
    spec = importlib.util.spec_from_file_location("quickstart", REPO / "configs/quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.update_from_flattened_dict(fields)
    return config


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory) -> Path:
    """A persistent XLA cache shared by this module's main.py runs: a restarted run reuses the
    compilations of the run before it (about half of a short run's time on 2 cores)."""
    return tmp_path_factory.mktemp("xla_cache")


def run_env(devices: int | None = None, cache: Path | None = None) -> dict[str, str]:
    """Environment for main.py: CPU, ``devices`` simulated devices (default: as this process)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2"}
    if cache is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache),
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    flags.append(f"--xla_force_host_platform_device_count={devices or jax.device_count()}")
    env["XLA_FLAGS"] = " ".join(flags)
    return env


def start(command, cache: Path, devices: int | None = None) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, env=run_env(devices, cache), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_checkpoint_after(workdir: Path, step: int, process: subprocess.Popen) -> int:
    deadline = time.time() + 300
    while time.time() < deadline:
        later = [s for s in checkpoint_steps(workdir) if s > step]
        if later:
            return later[0]
        if process.poll() is not None:
            raise AssertionError(f"run ended before a checkpoint after step {step}:\n"
                                 + process.stderr.read()[-3000:])
        time.sleep(0.02)
    raise AssertionError("no checkpoint within 300 s")


def finish(process: subprocess.Popen, code: int = 0) -> str:
    """The process's stdout and stderr (the log) once it has ended with ``code``."""
    out, err = process.communicate(timeout=600)
    assert process.returncode == code, err[-3000:]
    return out + err


def restore_state(workdir: Path, step: int) -> dict:
    """A checkpoint's model item (params, model_state) as numpy, whatever device layout wrote it (PRNG keys as
    their raw data)."""
    path = workdir / "checkpoints" / str(step) / "model"
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          checkpointer.metadata(path).item_metadata.tree)

    def to_numpy(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        return np.asarray(leaf)

    return jax.tree.map(to_numpy, checkpointer.restore(path, target))


def restore_params(workdir: Path, step: int) -> list[np.ndarray]:
    return jax.tree.leaves(restore_state(workdir, step)["params"])


def test_sigterm_sigkill_resume_exactly_and_eight_devices_agree(data_dir, reference, tmp_path,
                                                                compile_cache):
    """A run stopped by SIGTERM (exit 75 after saving), restarted and killed by SIGKILL, then finished,
    ends bit-identical to an uninterrupted run; a run on 8 simulated CPU devices agrees with
    it to float tolerance."""
    fields = run_fields(data_dir)
    total = 2 * 37
    eight, interrupted = tmp_path / "eight", tmp_path / "interrupted"
    eight_run = start(main_command(eight, fields), compile_cache, devices=8)

    run = start(main_command(interrupted, fields), compile_cache)
    wait_for_checkpoint_after(interrupted, 0, run)
    run.send_signal(signal.SIGTERM)
    assert "Preempted (SIGTERM): checkpoint saved at step" in finish(run, code=75)
    stopped_at = max(checkpoint_steps(interrupted))
    assert 0 < stopped_at < total and not (interrupted / "results.json").exists()

    run = start(main_command(interrupted, fields), compile_cache)
    killed_after = wait_for_checkpoint_after(interrupted, stopped_at, run)
    run.kill()
    run.wait()
    assert not (interrupted / "results.json").exists()
    assert max(checkpoint_steps(interrupted)) < total

    results = {"interrupted": train.train_and_evaluate(in_process_config(fields), interrupted),
               "reference": reference[1]}
    log = finish(eight_run)
    # Each metric line once (not again through clu's writer), clu's progress report with its
    # ETA, and no JAX backend noise.
    assert len(re.findall(r"step 10/74 .*examples/s", log)) == 1, log[-3000:]
    assert "ETA" in log and "Unable to initialize backend" not in log
    results["eight"] = json.loads((eight / "results.json").read_text())
    assert results["interrupted"]["resumed_from_step"] >= killed_after
    assert results["reference"]["resumed_from_step"] is None
    assert results["eight"]["devices"]["count"] == 8
    for field in ("accuracy", "test_loss", "confusion_matrix", "per_class"):
        assert results["interrupted"][field] == results["reference"][field], field
    assert results["eight"]["accuracy"] == pytest.approx(results["reference"]["accuracy"],
                                                         abs=0.01)
    assert results["eight"]["test_loss"] == pytest.approx(results["reference"]["test_loss"],
                                                          rel=1e-3)
    for ref, resumed, sharded in zip(restore_params(reference[0], total),
                                     restore_params(interrupted, total),
                                     restore_params(eight, total), strict=True):
        np.testing.assert_array_equal(resumed, ref)
        np.testing.assert_allclose(sharded, ref, rtol=1e-3, atol=1e-5)


def test_missing_real_dataset_is_a_clean_error(tmp_path):
    empty = tmp_path / "tfds"
    empty.mkdir()
    command = main_command(tmp_path / "run",
                           run_fields(str(empty), dataset="astrospectra_mnist/v2"))
    result = subprocess.run(command, cwd=REPO, env=run_env(), text=True, capture_output=True,
                            timeout=300)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: astrospectra_mnist/v2 is real LAMOST data" in result.stderr
    assert "--config.dataset=astrospectra_mnist/v2_synthetic" in result.stderr
