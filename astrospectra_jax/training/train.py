"""Training and evaluation: ``train_and_evaluate(config, workdir) -> results``.

Data parallel over every device: a 1-D mesh ``("data",)``, parameters and optimizer state
replicated, each batch sharded along ``"data"``. Global arrays make the loss, gradients and
batch-norm statistics global-batch quantities, so 1, 8 or 256 devices compute the same thing.
The training state is one pytree; a compiled *chunk* runs ``steps_per_call`` steps under
``lax.scan`` (unrolled on CPU, see ``scan_steps``) with the state donated, so Python only
dispatches one call per chunk and reads the previous chunk's metrics while the next one runs.

Reproducibility: the data order, augmentation and dropout are functions of (seed, step) or live
in the checkpointed state, and chunk boundaries are multiples of ``steps_per_call``, so a run
that is killed and restarted with the same command ends with bit-identical parameters.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from astrospectra_jax import models
from astrospectra_jax import results as run_files
from astrospectra_jax.data import catalogue
from astrospectra_jax.models import kernels
from astrospectra_jax.training import checkpointing, input_pipeline, metrics, sharding, steps


class ConfigError(ValueError):
    """An invalid config; the message names each offending field."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


# ----------------------------------------------------------------------------- validation

def validate(config: ml_collections.ConfigDict) -> catalogue.DatasetSpec:
    """Check the config before anything is loaded or compiled; returns the dataset's spec.

    Raises ConfigError listing every problem, each naming its field.
    """
    problems: list[str] = []

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    spec = None
    if config.dataset not in catalogue.KNOWN_DATASETS:
        problems.append(f"config.dataset={config.dataset!r} is not a known dataset; known: "
                        f"{', '.join(catalogue.KNOWN_DATASETS)}")
    else:
        spec = catalogue.info(config.dataset)

    name, size = config.model.name, config.model.input_size
    if name not in models.MODEL_NAMES:
        problems.append(f"config.model.name={name!r} is not a known model; known: "
                        f"{', '.join(models.MODEL_NAMES)}")
    else:
        sizes = models.input_sizes(name)
        check(size in sizes, f"config.model.input_size={size!r} is not supported by model "
                             f"{name!r}; supported: {', '.join(map(str, sizes))}")
        if spec is not None:
            line_model = models.is_line_model(name)
            check(line_model == (spec.modality == "line"),
                  f"config.model.name={name!r} is a{' line' if line_model else 'n image'} model "
                  f"but config.dataset={config.dataset!r} holds {spec.modality} data")
    check(config.model.dtype in steps.DTYPES,
          f"config.model.dtype={config.model.dtype!r} must be one of {', '.join(steps.DTYPES)}")
    check(config.model.kernels in kernels.CHOICES,
          f"config.model.kernels={config.model.kernels!r} must be one of "
          f"{', '.join(kernels.CHOICES)}")

    check(isinstance(config.batch_size, int) and config.batch_size > 0,
          f"config.batch_size={config.batch_size!r} must be a positive integer")
    if isinstance(config.batch_size, int) and config.batch_size > 0:
        check(config.batch_size % jax.device_count() == 0,
              f"config.batch_size={config.batch_size} must be divisible by the number of "
              f"devices ({jax.device_count()})")
    for field in ("num_epochs", "checkpoint_every_steps", "keep_checkpoints",
                  "log_every_steps", "shuffle_buffer"):
        value = config[field]
        check(isinstance(value, int) and value > 0,
              f"config.{field}={value!r} must be a positive integer")
    for field in ("eval_every_epochs", "max_steps", "profile_steps", "seed", "steps_per_call"):
        value = config[field]
        check(isinstance(value, int) and value >= 0,
              f"config.{field}={value!r} must be a non-negative integer")
    check(config.augment.max_shift >= 0,
          f"config.augment.max_shift={config.augment.max_shift!r} must be >= 0")
    check(0.0 <= config.label_smoothing < 1.0,
          f"config.label_smoothing={config.label_smoothing!r} must be in [0, 1)")

    opt = config.optimizer
    check(opt.name in steps.OPTIMIZERS,
          f"config.optimizer.name={opt.name!r} must be one of {', '.join(steps.OPTIMIZERS)}")
    check(opt.learning_rate > 0,
          f"config.optimizer.learning_rate={opt.learning_rate!r} must be positive")
    check(opt.weight_decay >= 0,
          f"config.optimizer.weight_decay={opt.weight_decay!r} must be >= 0")
    check(0 <= opt.momentum < 1, f"config.optimizer.momentum={opt.momentum!r} must be in [0, 1)")
    check(config.schedule in steps.SCHEDULES,
          f"config.schedule={config.schedule!r} must be one of {', '.join(steps.SCHEDULES)}")
    check(config.warmup_epochs >= 0,
          f"config.warmup_epochs={config.warmup_epochs!r} must be >= 0")
    check(config.input_pipeline in steps.PIPELINES,
          f"config.input_pipeline={config.input_pipeline!r} must be one of "
          f"{', '.join(steps.PIPELINES)}")

    for name in eval_dataset_names(config):
        if name in catalogue.KNOWN_DATASETS:
            other = catalogue.info(name)
            check(spec is None or (other.modality, other.class_names) == (spec.modality, spec.class_names),
                  f"config.eval_datasets: {name!r} holds {other.modality} data of classes "
                  f"{', '.join(other.class_names)}; the model takes "
                  + (f"{spec.modality} data of classes {', '.join(spec.class_names)}" if spec
                     else "another dataset"))
        else:
            check(Path(name).is_dir(), f"config.eval_datasets: {name!r} is neither a known "
                                       "dataset nor a folder (of converted or FITS data)")

    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return spec


def eval_dataset_names(config: ml_collections.ConfigDict) -> list[str]:
    """``config.eval_datasets`` ("name1,name2", registered names or folders) as a list."""
    return [name.strip() for name in str(config.get("eval_datasets") or "").split(",")
            if name.strip()]


# ----------------------------------------------------------------------------- data

class _Data:
    """The splits as the chosen pipeline needs them."""

    def __init__(self, config, spec, mesh, splits: input_pipeline.Splits | None = None):
        self.config, self.spec, self.mesh = config, spec, mesh
        self.feature_key = "image" if spec.modality == "image" else "spectrum"
        name, data_dir = config.dataset, config.data_dir
        if splits is not None:
            if config.input_pipeline != "device":
                raise ConfigError(f"config.input_pipeline={config.input_pipeline!r}: in-memory "
                                  "splits train through the 'device' pipeline only")
            splits = splits.checked(spec.feature_shape, spec.num_classes,
                                    np.uint8 if spec.modality == "image" else np.float32)
            test_features, test_labels = splits.test_features, splits.test_labels
        else:
            test_features, test_labels = catalogue.load_arrays(name, "test", data_dir=data_dir)
        self.test_labels = test_labels.astype(np.int32)
        if config.input_pipeline == "device":
            if splits is not None:
                train_features, train_labels = splits.train_features, splits.train_labels
            else:
                train_features, train_labels = catalogue.load_arrays(name, "train",
                                                                     data_dir=data_dir)
            self.num_train = len(train_labels)
            self.train = (sharding.put_replicated(train_features, mesh),
                          sharding.put_replicated(train_labels.astype(np.int32), mesh))
            padded = input_pipeline.pad_to_batches(test_features, self.test_labels,
                                                   config.batch_size)
            self.test = tuple(sharding.put_replicated(a, mesh) for a in padded)
        else:
            import tensorflow_datasets as tfds

            builder = tfds.builder(name, data_dir=data_dir)
            self.num_train = builder.info.splits["train"].num_examples
            self.train = self.test = None
            self.train_dtype = test_features.dtype
            self.feature_shape = test_features.shape[1:]

    def stream(self, start_step: int, steps_per_epoch: int):
        return input_pipeline.tfdata_train_batches(
            self.config.dataset, data_dir=self.config.data_dir, feature_key=self.feature_key,
            batch_size=self.config.batch_size, seed=self.config.seed, start_step=start_step,
            steps_per_epoch=steps_per_epoch, shuffle_buffer=self.config.shuffle_buffer)

    def stream_chunk(self, batches, num_steps: int, chunk: int):
        """(features, labels) global arrays (chunk, B, ...) of the next ``num_steps`` batches,
        padded with zeros to the chunk length (the padded steps are no-ops on device)."""
        local_batch = self.config.batch_size // jax.process_count()
        features = np.zeros((chunk, local_batch, *self.feature_shape), self.train_dtype)
        labels = np.zeros((chunk, local_batch), np.int32)
        for i in range(num_steps):
            features[i], labels[i] = next(batches)
        return (sharding.global_batch(features, self.mesh, leading_axes=1),
                sharding.global_batch(labels, self.mesh, leading_axes=1))


def evaluate(data: _Data, eval_batch, state) -> dict[str, Any]:
    """Test loss, accuracy and predictions over the whole test split (padding masked).

    One call per batch: evaluation is rare, and a loop inside the compiled function would be
    slow on CPU (see scan_steps). Results stay on device until the end.
    """
    if data.test is not None:
        return _evaluate_resident(eval_batch, state, data.test, data.test_labels,
                                  data.config.batch_size)
    batches = input_pipeline.tfdata_eval_batches(
        data.config.dataset, data_dir=data.config.data_dir, feature_key=data.feature_key,
        batch_size=data.config.batch_size)
    outputs = [eval_batch(state, *(sharding.global_batch(a, data.mesh) for a in batch),
                          np.int32(0))
               for batch in batches]
    return _summed(outputs, data.test_labels)


def _evaluate_resident(eval_batch, state, padded_arrays, labels, batch_size: int):
    """``evaluate`` over (features, labels, mask) padded to whole batches, on the devices."""
    num_batches = padded_arrays[1].shape[0] // batch_size
    return _summed([eval_batch(state, *padded_arrays, np.int32(i)) for i in range(num_batches)],
                   labels)


def _summed(outputs, labels) -> dict[str, Any]:
    n = len(labels)
    loss_sums, corrects, predictions = zip(*jax.device_get(outputs), strict=True)
    return {"loss": float(np.sum(loss_sums)) / n, "accuracy": float(np.sum(corrects)) / n,
            "predictions": np.concatenate(predictions)[:n], "labels": labels}


def evaluate_other_datasets(config, spec, mesh, eval_batch, state, workdir: Path, *,
                            lead: bool) -> dict[str, dict[str, Any]]:
    """The final model on each of ``config.eval_datasets``: a section per dataset.

    A registered dataset contributes its test split; a folder, every labelled input under it
    (converted layout or FITS files, read by ``data.inputs`` as ``predict`` reads them; a folder counts as
    synthetic when every id is one the simulator gave).
    """
    from astrospectra_jax.data import inputs as data_inputs

    sections = {}
    for name in eval_dataset_names(config):
        if name in catalogue.KNOWN_DATASETS:
            features, labels = catalogue.load_arrays(name, "test", data_dir=config.data_dir)
            synthetic, split = catalogue.info(name).synthetic, "test"
        else:
            inputs = data_inputs.collect_inputs([name], spec.modality, spec.task or "", progress=False)
            keep = [i for i, c in enumerate(inputs.true_classes) if c in spec.class_names]
            if not keep:  # recorded, not raised: the trained model's results still count
                message = (f"no usable {spec.modality} input of classes "
                           f"{', '.join(spec.class_names)} ({len(inputs.skipped)} skipped)")
                logging.warning("config.eval_datasets: %s: %s", name, message)
                sections[name] = {"error": message}
                continue
            features = np.stack([inputs.features[i] for i in keep])
            labels = np.array([spec.class_names.index(inputs.true_classes[i]) for i in keep])
            synthetic = all(inputs.ids[i].startswith("synthetic_") for i in keep)
            split = "all"
        padded = input_pipeline.pad_to_batches(features, labels.astype(np.int32),
                                               config.batch_size)
        arrays = tuple(sharding.put_replicated(a, mesh) for a in padded)
        result = _evaluate_resident(eval_batch, state, arrays, labels, config.batch_size)
        section = metrics.classification_report(result["labels"], result["predictions"],
                                                spec.class_names)
        section.update({"synthetic": bool(synthetic), "split": split, "examples": len(labels),
                        "loss": result["loss"]})
        sections[name] = section
        logging.info("Accuracy %.4f on %d examples of %s%s (eval_datasets)", section["accuracy"],
                     len(labels), name, " (SYNTHETIC)" if synthetic else "")
        if lead:
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
            metrics.plot_confusion_matrix(
                workdir / f"confusion_matrix_{slug}.png", section["confusion_matrix"],
                spec.class_names,
                title=f"{config.model.name} trained on {config.dataset}\nevaluated on {name}"
                      f"{' (SYNTHETIC)' if synthetic else ''}: accuracy {section['accuracy']:.3f}")
    return sections


# ----------------------------------------------------------------------------- the loop

class EpochPermutations:
    """``epoch_permutations`` for the epoch of a step, recomputed only when the epoch changes."""

    def __init__(self, epoch_permutations, steps_per_epoch: int):
        self.compute, self.steps_per_epoch = epoch_permutations, steps_per_epoch
        self.epoch, self.value = None, None

    def __call__(self, step: int) -> jax.Array:
        epoch = step // self.steps_per_epoch
        if epoch != self.epoch:
            self.epoch, self.value = epoch, self.compute(np.int32(epoch))
        return self.value


class _Preemption:
    """SIGTERM sets a flag; the loop checkpoints at the next chunk boundary and exits."""

    def __init__(self):
        self.requested = threading.Event()
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda *_: self.requested.set())
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def agreed(self) -> bool:
        """True when any process was asked to stop (all processes stop at the same step)."""
        flag = self.requested.is_set()
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            flag = bool(np.max(multihost_utils.process_allgather(np.int32(flag))))
        return flag


def _periodic_actions(config, workdir: Path, total_steps: int, first_chunk_end: int,
                      lead: bool):
    """clu's progress report (steps/s, percent done and ETA in the log, every
    ``log_every_steps``) and, with ``config.profile_steps``, a profiler trace in ``workdir`` of
    that many steps from the end of the first (warm-up) chunk. None for each where clu cannot
    be imported: its periodic_actions imports TensorFlow, which accelerator images may lack."""
    try:
        from clu import periodic_actions
    except ImportError as error:
        logging.warning("No progress report or profiling: clu.periodic_actions needs %s",
                        error.name or error)
        return None, None
    progress = periodic_actions.ReportProgress(
        num_train_steps=total_steps, every_steps=config.log_every_steps, every_secs=None)
    profile = None
    if config.profile_steps and lead:
        profile = periodic_actions.Profile(
            logdir=workdir, num_profile_steps=config.profile_steps, profile_duration_ms=None,
            first_profile=first_chunk_end, every_steps=None, every_secs=None)
    return progress, profile


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       splits: input_pipeline.Splits | None = None) -> dict[str, Any]:
    """Train ``config`` in ``workdir`` (resuming from its latest checkpoint), evaluate on the
    test split, write results.json, metrics.jsonl, TensorBoard events, confusion_matrix.png.

    The data come from TFDS (``config.dataset``), or from ``splits`` (in-memory arrays, no
    TensorFlow needed) whose modality and classes ``config.dataset`` names.

    Returns the results dict, or ``{"preempted": True, "step": ...}`` when SIGTERM stopped it.
    Raises ConfigError, catalogue.DatasetNotFoundError, NonFiniteLossError.
    """
    wall_start = time.time()
    spec = validate(config)
    workdir = Path(workdir)
    lead = jax.process_index() == 0
    if lead:
        workdir.mkdir(parents=True, exist_ok=True)
        # What predict needs before results.json exists: the model, its input and classes.
        run_files.write_json(workdir / run_files.CONFIG_JSON,
                             json.loads(config.to_json_best_effort()))
    mesh = sharding.make_mesh()
    data = _Data(config, spec, mesh, splits)
    batch_size = config.batch_size
    steps_per_epoch = input_pipeline.steps_per_epoch(data.num_train, batch_size)
    if steps_per_epoch == 0:
        raise ConfigError(f"config.batch_size={batch_size} exceeds the {data.num_train} "
                          f"training examples of {config.dataset}")
    total_steps = config.num_epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    chunk = steps.resolve_steps_per_call(config)

    tx, schedule = steps.make_optimizer(config, steps_per_epoch)
    graphdef, state = steps.init_state(config, spec, tx, mesh)
    manager = checkpointing.open_manager(workdir / run_files.CHECKPOINTS_DIR,
                                         config.keep_checkpoints)
    log = metrics.MetricsLog(workdir, enabled=lead)
    try:
        state, restored_step = checkpointing.restore_latest(manager, state)
        start_step = int(jax.device_get(state["step"]))
        if restored_step is not None:
            logging.info("Resuming from checkpoint at step %d in %s", start_step, manager.directory)
        logging.info("%s on %s: %d train examples, %d steps/epoch, %d steps, batch %d on %d %s "
                     "device(s)", config.model.name, config.dataset, data.num_train,
                     steps_per_epoch, total_steps, batch_size, jax.device_count(),
                     jax.devices()[0].platform)

        compiled = steps.make_steps(config, spec, graphdef, tx, mesh, steps_per_epoch, data.num_train,
                           chunk)
        compile_start = time.time()
        end_arg = np.int32(0)
        if data.train is not None:
            permutations = EpochPermutations(compiled["epoch_permutations"], steps_per_epoch)
            train_chunk = compiled["device_chunk"].lower(
                state, *data.train, permutations(start_step), end_arg).compile()
            eval_fn = compiled["eval_batch"].lower(state, *data.test, end_arg).compile()
            call_chunk = lambda state, step, end: train_chunk(  # noqa: E731
                state, *data.train, permutations(step), np.int32(end))
        else:
            batches = data.stream(start_step, steps_per_epoch)
            example = data.stream_chunk(iter(()), 0, chunk)
            train_chunk = compiled["stream_chunk"].lower(state, *example, end_arg).compile()
            eval_fn = compiled["eval_batch"]
            call_chunk = lambda state, step, end: train_chunk(  # noqa: E731
                state, *data.stream_chunk(batches, end - step, chunk), np.int32(end))
        compile_seconds = time.time() - compile_start
        logging.info("Compiled the training chunk (%d steps/call) in %.1f s", chunk,
                     compile_seconds)

        first_chunk_end = min(total_steps, (start_step // chunk + 1) * chunk)
        actions = _periodic_actions(config, workdir, total_steps, first_chunk_end, lead)
        with _Preemption() as preemption:
            outcome = _train_loop(config, state, call_chunk, eval_fn, data, manager, log,
                                  preemption, schedule, start_step, total_steps, steps_per_epoch,
                                  chunk, actions)
        if outcome["preempted"]:
            checkpointing.finish(manager, outcome["step"])
            logging.warning("SIGTERM: saved a checkpoint at step %d in %s and stopped; rerun the "
                            "same command to resume.", outcome["step"], manager.directory)
            return {"preempted": True, "step": outcome["step"],
                    "checkpoint_dir": str(manager.directory)}
        state = outcome["state"]

        evaluation = evaluate(data, eval_fn, state)
        log.write("test", total_steps, {"epoch": total_steps / steps_per_epoch,
                                        "loss": evaluation["loss"],
                                        "accuracy": evaluation["accuracy"]})
        checkpointing.finish(manager, total_steps)
        results = metrics.classification_report(evaluation["labels"], evaluation["predictions"],
                                                spec.class_names)
        if eval_dataset_names(config):
            results["eval_datasets"] = evaluate_other_datasets(
                config, spec, mesh, compiled["eval_batch"], state, workdir, lead=lead)
        results.update({
            "dataset": config.dataset,
            "data_source": "tfds" if splits is None else "in-memory arrays",
            "synthetic": bool(spec.synthetic),
            "model": config.model.name,
            "kernels": kernels.resolve(config.model.kernels).name,
            "test_loss": evaluation["loss"],
            "steps": total_steps,
            "epochs": total_steps / steps_per_epoch,
            "train_examples": data.num_train,
            "test_examples": len(data.test_labels),
            "seed": config.seed,
            "config": json.loads(config.to_json_best_effort()),
            "devices": {"count": jax.device_count(), "platform": jax.devices()[0].platform,
                        "kind": jax.devices()[0].device_kind,
                        "processes": jax.process_count()},
            "git_commit": _git_commit(),
            "wall_time_s": time.time() - wall_start,
            "compile_time_s": compile_seconds,
            "train_examples_per_s": outcome["examples_per_s"],
            "train_examples_per_s_per_device": (outcome["examples_per_s"] / jax.device_count()
                                                if outcome["examples_per_s"] else None),
            "resumed_from_step": restored_step,
        })
        if lead:
            run_files.write_json(workdir / run_files.RESULTS_JSON, results)
            metrics.plot_confusion_matrix(
                workdir / run_files.CONFUSION_PNG, results["confusion_matrix"], spec.class_names,
                title=f"{config.dataset}{' (SYNTHETIC)' if spec.synthetic else ''}\n"
                      f"{config.model.name}: test accuracy {results['accuracy']:.3f}")
        logging.info("Test accuracy %.4f (loss %.4f) on %d examples of %s%s; results in %s",
                     results["accuracy"], evaluation["loss"], len(data.test_labels),
                     config.dataset, " (SYNTHETIC)" if spec.synthetic else "", workdir)
        return results
    finally:
        try:  # a pending save completes, also on Ctrl-C; a failed one was reported already
            manager.wait_until_finished()
            manager.close()
        except Exception:  # noqa: BLE001
            checkpointing.remove_partial(Path(manager.directory))
        log.close()


def _train_loop(config, state, call_chunk, eval_fn, data, manager, log, preemption, schedule,
                start_step: int, total_steps: int, steps_per_epoch: int, chunk: int,
                periodic_actions) -> dict[str, Any]:
    """Dispatch chunks until ``total_steps``; metrics are read one chunk late so the devices
    never wait for Python, except before checkpoints and evaluations, which must know that
    every step so far was finite."""
    batch_size = config.batch_size
    every = config.checkpoint_every_steps
    pending: list[tuple[int, int, Any]] = []  # (first step, steps, metrics on device)
    window = {"loss": [], "accuracy": [], "time": time.time(), "step": start_step}
    last_saved = start_step if manager.latest_step() == start_step else None
    excluded = 0.0  # seconds of evaluation and checkpointing inside the timed span
    timing = None  # (time, step) after the first chunk: throughput excludes the warm-up call
    progress, profile = periodic_actions
    if progress is not None:
        progress(start_step)  # clu's actions are then called once per finished step

    def read(keep_last: bool):
        while len(pending) > int(keep_last):
            first, n, out = pending.pop(0)
            out = jax.device_get(out)
            loss, accuracy = np.asarray(out["loss"])[:n], np.asarray(out["accuracy"])[:n]
            bad = np.flatnonzero(~np.isfinite(loss))
            if bad.size:
                kept = (f"the last good checkpoint is step {last_saved} in {manager.directory}"
                        if last_saved is not None else "no checkpoint was saved")
                raise NonFiniteLossError(
                    f"training loss is {loss[bad[0]]} at step {first + bad[0] + 1} "
                    f"(epoch {(first + bad[0]) // steps_per_epoch + 1}); stopping. The bad "
                    f"state was not saved; {kept}. Try a lower "
                    f"config.optimizer.learning_rate (now {config.optimizer.learning_rate}).")
            window["loss"].extend(loss.tolist())
            window["accuracy"].extend(accuracy.tolist())
            done = first + n
            if progress is not None:
                for finished in range(first + 1, done + 1):
                    progress(finished)
            log_every = config.log_every_steps
            if done // log_every > first // log_every or done == total_steps:
                now = time.time()
                rate = (done - window["step"]) * batch_size / max(now - window["time"], 1e-9)
                values = {"epoch": done / steps_per_epoch,
                          "loss": float(np.mean(window["loss"])),
                          "accuracy": float(np.mean(window["accuracy"])),
                          "learning_rate": float(schedule(done - 1)),
                          "examples_per_s": rate}
                log.write("train", done, values)
                logging.info("step %d/%d  epoch %.2f  loss %.4f  accuracy %.4f  lr %.2e  "
                             "%.0f examples/s", done, total_steps, values["epoch"],
                             values["loss"], values["accuracy"], values["learning_rate"], rate)
                window.update(loss=[], accuracy=[], time=now, step=done)

    step = start_step
    while step < total_steps:
        end = min(total_steps, (step // chunk + 1) * chunk)  # chunk ends: multiples of chunk
        state, out = call_chunk(state, step, end)
        if last_saved is not None:  # a failed background save (full disk) stops the run now
            checkpointing.raise_save_errors(manager, last_saved)
        pending.append((step, end - step, out))
        previous, step = step, end
        if timing is None:
            read(keep_last=False)
            timing = (time.time(), step)
        else:
            read(keep_last=True)
        if profile is not None:
            profile(step)  # starts the trace after the first chunk, stops it profile_steps on

        preempted = preemption.agreed()
        checkpoint_due = previous // every != step // every or step == total_steps or preempted
        completed_epochs = step // steps_per_epoch
        eval_due = (config.eval_every_epochs and step < total_steps and
                    completed_epochs > previous // steps_per_epoch and
                    completed_epochs % config.eval_every_epochs == 0)
        if checkpoint_due or eval_due:
            read(keep_last=False)
            began = time.time()
            if eval_due:
                result = evaluate(data, eval_fn, state)
                log.write("test", step, {"epoch": step / steps_per_epoch,
                                         "loss": result["loss"], "accuracy": result["accuracy"]})
                logging.info("epoch %d: test loss %.4f  test accuracy %.4f", completed_epochs,
                             result["loss"], result["accuracy"])
            if checkpoint_due:
                checkpointing.save(manager, step, state)
                last_saved = step
            excluded += time.time() - began
        if preempted:
            return {"preempted": True, "step": step}

    read(keep_last=False)
    jax.block_until_ready(state)
    if profile is not None:
        with contextlib.suppress(RuntimeError):  # the run ended before profile_steps did
            jax.profiler.stop_trace()
    examples_per_s = None
    if timing is not None and step > timing[1]:
        examples_per_s = (step - timing[1]) * batch_size / max(
            time.time() - timing[0] - excluded, 1e-9)
    return {"preempted": False, "state": state, "examples_per_s": examples_per_s}


def _git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10,
                                env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
