"""Training and evaluation: ``train_and_evaluate(config, workdir) -> results``.

Data parallel over every device: a 1-D mesh ``("data",)``, parameters and optimizer state
replicated, each batch sharded along ``"data"`` (``steps``). The story, top to bottom: the config
checks, the mesh, the data (``inputs``), the state (``state``) and its compiled steps, the
restore of the latest checkpoint (``checkpointing``), the loop (``loop``), the evaluation
(``evaluation``) and the results written to the workdir.

Reproducibility: the data order, augmentation and dropout are functions of (seed, step) or live
in the checkpointed state, and chunk boundaries are multiples of ``steps_per_call``, so a run
that is killed and restarted with the same command ends with bit-identical parameters.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
from absl import logging

from astrospectra_jax import results as run_files
from astrospectra_jax.models import kernels
from astrospectra_jax.training import (checkpointing, ensemble, evaluation, inputs,
                                       input_pipeline, loop, metrics, preemption, steps,
                                       trust_fit)
from astrospectra_jax.training.configuration import ConfigError, eval_dataset_names, validate
from astrospectra_jax.training.loop import NonFiniteLossError
from astrospectra_jax.training.preemption import Preempted
from astrospectra_jax.training.state import init_state

__all__ = ["ConfigError", "NonFiniteLossError", "Preempted", "train_and_evaluate", "validate"]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       splits: input_pipeline.Splits | None = None) -> dict[str, Any]:
    """Train ``config`` in ``workdir`` (resuming from its latest checkpoint), evaluate on the
    test split, fit the trust records (``trust_fit``); write results.json, metrics.jsonl,
    TensorBoard events and the figures. The data come from TFDS (``config.dataset``) or from
    ``splits`` (in-memory arrays, no TensorFlow) whose modality and classes ``config.dataset``
    names. Returns the results. Raises ConfigError, catalogue.DatasetNotFoundError,
    NonFiniteLossError, CheckpointSaveError, and Preempted (SIGTERM, after a checkpoint).
    """
    wall_start = time.time()
    spec = validate(config)
    workdir, lead = Path(workdir), jax.process_index() == 0
    mesh = ensemble.make_mesh(config)  # 2-D ("member", "data") for members on devices
    chunk = steps.resolve_steps_per_call(config)
    train_input, test_split = inputs.load(config, spec, mesh, chunk, splits)
    steps_per_epoch = inputs.steps_per_epoch(config, train_input.num_train)
    cadence = loop.Cadence.of(config, steps_per_epoch, chunk)
    tx, schedule = steps.make_optimizer(config, steps_per_epoch)
    graphdef, state = init_state(config, spec, tx, mesh)
    compiled = steps.make_steps(config, spec, graphdef, tx, mesh, steps_per_epoch,
                                train_input.num_train, chunk)
    if lead:  # what predict needs before results.json exists: the model, its input and classes
        workdir.mkdir(parents=True, exist_ok=True)
        run_files.write_json(workdir / run_files.CONFIG_JSON, _config_json(config))
    manager = checkpointing.open_manager(workdir / run_files.CHECKPOINTS_DIR,
                                         config.keep_checkpoints)
    log = metrics.MetricsLog(workdir, enabled=lead)
    try:
        state, restored_step = checkpointing.restore_latest(manager, state)
        start_step = int(jax.device_get(state.step))
        log.continue_from(start_step)  # an interrupted run's rows past its checkpoint go
        _log_start(config, train_input.num_train, cadence, manager, restored_step, start_step)
        compile_start = time.time()
        train_input.compile(compiled, state, start_step)
        compile_seconds = time.time() - compile_start
        logging.info("Compiled the training chunk (%d steps/call) in %.1f s", chunk,
                     compile_seconds)

        def evaluate(state, step: int) -> dict[str, Any]:
            result = evaluation.evaluate(test_split, compiled.eval_batch, state)
            log.write("test", step, {"epoch": step / steps_per_epoch, "loss": result["loss"],
                                     "accuracy": result["accuracy"]})
            ensemble.log_members(log, "test", step, step / steps_per_epoch, result)
            logging.info("epoch %.2f: test loss %.4f  test accuracy %.4f",
                         step / steps_per_epoch, result["loss"], result["accuracy"])
            return result

        progress, profile = loop.periodic_actions(config, workdir, cadence.total_steps,
                                                  cadence.chunk_end(start_step), lead)
        window = loop.MetricWindow(config, log, schedule, cadence, start_step, progress)
        with preemption.watch() as preempt:
            outcome = loop.train(state, train_input, cadence, window, manager, evaluate, preempt,
                                 start_step, profile)
        checkpointing.finish(manager, outcome.step)
        if outcome.preempted:  # main.py prints Preempted's message
            raise Preempted(outcome.step, str(manager.directory))
        final = evaluate(outcome.state, cadence.total_steps)
        results = metrics.classification_report(final["labels"], final["predictions"],
                                                spec.class_names)
        if eval_dataset_names(config):
            results["eval_datasets"] = evaluation.evaluate_other_datasets(
                config, spec, mesh, compiled.eval_batch, outcome.state, workdir, lead=lead)
        results.update(trust_fit.fit(config, spec, graphdef, mesh, outcome.state.model(),
                                     train_input.held_out, test_split, workdir, lead=lead))
        results.update(_run_record(config, spec, splits, final, cadence, train_input.num_train,
                                   outcome, restored_step, compile_seconds, wall_start))
        if lead:
            _write_results(workdir, results, spec)
        logging.info("Test accuracy %.4f (loss %.4f) on %d examples of %s%s; results in %s",
                     results["accuracy"], final["loss"], len(final["labels"]), config.dataset,
                     " (SYNTHETIC)" if spec.synthetic else "", workdir)
        return results
    finally:
        try:  # a pending save completes, also on Ctrl-C; a failed one was reported already
            manager.wait_until_finished()
            manager.close()
        except Exception:  # noqa: BLE001, S110
            pass
        log.close()


def _config_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return json.loads(config.to_json_best_effort())


def _log_start(config, num_train: int, cadence: loop.Cadence, manager, restored_step,
               start_step: int) -> None:
    if restored_step is not None:
        logging.info("Resuming from checkpoint at step %d in %s", start_step, manager.directory)
    logging.info("%s on %s: %d train examples, %d steps/epoch, %d steps, batch %d on %d %s "
                 "device(s)", config.model.name, config.dataset, num_train,
                 cadence.steps_per_epoch, cadence.total_steps, config.batch_size,
                 jax.device_count(), jax.devices()[0].platform)


def _run_record(config, spec, splits, final, cadence: loop.Cadence, num_train: int,
                outcome: loop.LoopOutcome, restored_step, compile_seconds: float,
                wall_start: float) -> dict[str, Any]:
    """What results.json says about the run beside the classification report."""
    rate = outcome.examples_per_s
    return {
        "dataset": config.dataset,
        "data_source": "tfds" if splits is None else "in-memory arrays",
        "synthetic": bool(spec.synthetic),
        "model": config.model.name,
        "kernels": kernels.resolve(config.model.kernels).name,
        "test_loss": final["loss"],
        "steps": cadence.total_steps,
        "epochs": cadence.total_steps / cadence.steps_per_epoch,
        "train_examples": num_train,
        "test_examples": len(final["labels"]),
        "seed": config.seed,
        "config": _config_json(config),
        "devices": {"count": jax.device_count(), "platform": jax.devices()[0].platform,
                    "kind": jax.devices()[0].device_kind, "processes": jax.process_count()},
        "git_commit": run_files.git_commit(),
        "wall_time_s": time.time() - wall_start,
        "compile_time_s": compile_seconds,
        "train_examples_per_s": rate,
        "train_examples_per_s_per_device": rate / jax.device_count() if rate else None,
        "resumed_from_step": restored_step,
        "member_examples_per_s": rate * ensemble.size(config) if rate else None,
        **ensemble.results_fields(config, final, spec.class_names),
    }


def _write_results(workdir: Path, results: dict[str, Any], spec) -> None:
    run_files.write_json(workdir / run_files.RESULTS_JSON, results)
    metrics.plot_confusion_matrix(
        workdir / run_files.CONFUSION_PNG, results["confusion_matrix"], spec.class_names,
        title=f"{results['dataset']}{' (SYNTHETIC)' if spec.synthetic else ''}\n"
              f"{results['model']}: test accuracy {results['accuracy']:.3f}")


