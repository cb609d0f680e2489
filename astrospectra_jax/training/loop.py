"""The training loop: chunks, metric windows, and the checkpoint and evaluation cadence.

Chunks end at multiples of ``steps_per_call`` (so a resumed run cuts the same chunks as an
uninterrupted one). Metrics are read one chunk late so the devices never wait for Python,
except before checkpoints and evaluations, which must know that every step so far was finite.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

import jax
import numpy as np
from absl import logging

from astrospectra_jax.training import checkpointing
from astrospectra_jax.training.configuration import non_negative, positive


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclasses.dataclass(frozen=True)
class Cadence:
    """When chunks end, and when a checkpoint or an evaluation is due."""

    total_steps: int
    steps_per_epoch: int
    chunk: int
    checkpoint_every: int
    eval_every_epochs: int

    @classmethod
    def of(cls, config, steps_per_epoch: int, chunk: int) -> Cadence:
        total = positive("num_epochs", config.num_epochs) * steps_per_epoch
        if non_negative("max_steps", config.max_steps):
            total = min(total, config.max_steps)
        return cls(total, steps_per_epoch, chunk,
                   positive("checkpoint_every_steps", config.checkpoint_every_steps),
                   non_negative("eval_every_epochs", config.eval_every_epochs))

    def chunk_end(self, step: int) -> int:
        return min(self.total_steps, (step // self.chunk + 1) * self.chunk)

    def checkpoint_due(self, previous: int, step: int) -> bool:
        return (previous // self.checkpoint_every != step // self.checkpoint_every
                or step == self.total_steps)

    def eval_due(self, previous: int, step: int) -> bool:
        epochs = step // self.steps_per_epoch
        return bool(self.eval_every_epochs and step < self.total_steps
                    and epochs > previous // self.steps_per_epoch
                    and epochs % self.eval_every_epochs == 0)


class MetricWindow:
    """The chunks' metrics, read from the devices late: checked finite, averaged over windows
    of ``log_every_steps`` steps, logged, and passed to clu's progress report. An ensemble's
    metrics have a member axis: ``train`` logs the members' mean, ``train_member_<k>`` each."""

    def __init__(self, config, log, schedule, cadence: Cadence, start_step: int, progress):
        self.config, self.log, self.schedule, self.cadence = config, log, schedule, cadence
        self.log_every = positive("log_every_steps", config.log_every_steps)
        self.progress = progress
        self.pending: list[tuple[int, int, Any]] = []  # (first step, steps, metrics on device)
        self.kept = "no checkpoint was saved"  # says where the last good checkpoint is
        self._reset(start_step)
        if progress is not None:
            progress(start_step)  # clu's actions are then called once per finished step

    def _reset(self, step: int) -> None:
        self.loss, self.accuracy, self.time, self.step = [], [], time.time(), step

    def add(self, first: int, n: int, out) -> None:
        self.pending.append((first, n, out))

    def read(self, keep_last: bool = False) -> None:
        """Read every pending chunk (all but the newest with ``keep_last``)."""
        while len(self.pending) > int(keep_last):
            first, n, out = self.pending.pop(0)
            out = jax.device_get(out)
            loss, accuracy = np.asarray(out["loss"])[:n], np.asarray(out["accuracy"])[:n]
            self._check_finite(first, loss)
            self.loss.extend(loss.tolist())
            self.accuracy.extend(accuracy.tolist())
            done = first + n
            if self.progress is not None:
                for finished in range(first + 1, done + 1):
                    self.progress(finished)
            if done // self.log_every > first // self.log_every or \
                    done == self.cadence.total_steps:
                self._write(done)

    def _check_finite(self, first: int, loss: np.ndarray) -> None:
        loss = loss.reshape(len(loss), -1)  # (steps, members)
        bad = np.flatnonzero(~np.isfinite(loss).all(axis=1))
        if bad.size:
            value = loss[bad[0]][~np.isfinite(loss[bad[0]])][0]
            member = "" if loss.shape[1] == 1 else \
                f" (member {int(np.flatnonzero(~np.isfinite(loss[bad[0]]))[0])})"
            raise NonFiniteLossError(
                f"training loss is {value}{member} at step {first + bad[0] + 1} (epoch "
                f"{(first + bad[0]) // self.cadence.steps_per_epoch + 1}); stopping. The bad "
                f"state was not saved; {self.kept}. Try a lower "
                f"config.optimizer.learning_rate (now {self.config.optimizer.learning_rate}).")

    def _write(self, done: int) -> None:
        now = time.time()
        rate = (done - self.step) * self.config.batch_size / max(now - self.time, 1e-9)
        values = {"epoch": done / self.cadence.steps_per_epoch,
                  "loss": float(np.mean(self.loss)), "accuracy": float(np.mean(self.accuracy)),
                  "learning_rate": float(self.schedule(done - 1)), "examples_per_s": rate}
        self.log.write("train", done, values)
        if np.ndim(self.loss) == 2:  # an ensemble: each member's curve
            for k, (loss, accuracy) in enumerate(zip(np.mean(self.loss, axis=0),
                                                     np.mean(self.accuracy, axis=0))):
                self.log.write(f"train_member_{k}", done, {
                    "epoch": values["epoch"], "loss": float(loss), "accuracy": float(accuracy)})
        left = (self.cadence.total_steps - done) * (now - self.time) / max(done - self.step, 1)
        logging.info("step %d/%d  epoch %.2f  loss %.4f  accuracy %.4f  lr %.2e  %.0f examples/s"
                     "  ETA %dm%02ds", done, self.cadence.total_steps, values["epoch"],
                     values["loss"], values["accuracy"], values["learning_rate"], rate,
                     *divmod(round(left), 60))
        self._reset(done)


@dataclasses.dataclass
class LoopOutcome:
    state: Any
    step: int
    preempted: bool
    examples_per_s: float | None  # after the first (warm-up) chunk, without evals and saves


def train(state, train_input, cadence: Cadence, window: MetricWindow, manager, evaluate,
          preemption, start_step: int, profile=None) -> LoopOutcome:
    """Run chunks from ``start_step`` to ``cadence.total_steps`` (or a preemption), saving
    checkpoints and calling ``evaluate(state, step)`` as the cadence says."""
    batch_size = window.config.batch_size
    last_saved = start_step if manager.latest_step() == start_step else None
    if last_saved is not None:
        window.kept = f"the last good checkpoint is step {last_saved} in {manager.directory}"
    excluded, timing, step, boundary = 0.0, None, start_step, 0
    while step < cadence.total_steps:
        end = cadence.chunk_end(step)
        state, out = train_input(state, step, end)
        if last_saved is not None:  # a failed background save (full disk) stops the run now
            checkpointing.raise_save_errors(manager, last_saved)
        window.add(step, end - step, out)
        previous, step, boundary = step, end, boundary + 1
        window.read(keep_last=timing is not None)
        timing = timing or (time.time(), step)
        if profile is not None:
            profile(step)  # starts the trace after the first chunk, stops it profile_steps on
        preempted = preemption.reached(boundary)
        eval_due = cadence.eval_due(previous, step)
        if cadence.checkpoint_due(previous, step) or eval_due or preempted:
            window.read()
            began = time.time()
            if eval_due:
                evaluate(state, step)
            if cadence.checkpoint_due(previous, step) or preempted:
                checkpointing.save(manager, state, progress(step, cadence.steps_per_epoch))
                last_saved = step
                window.kept = f"the last good checkpoint is step {step} in {manager.directory}"
            excluded += time.time() - began
        if preempted:
            return LoopOutcome(state, step, True, None)
    window.read()
    jax.block_until_ready(state)
    if profile is not None:
        with contextlib.suppress(RuntimeError):  # the run ended before profile_steps did
            jax.profiler.stop_trace()
    rate = None
    if timing is not None and step > timing[1]:
        rate = (step - timing[1]) * batch_size / max(time.time() - timing[0] - excluded, 1e-9)
    return LoopOutcome(state, step, False, rate)


def progress(step: int, steps_per_epoch: int) -> dict[str, int]:
    """The ``progress`` item of a checkpoint: the step and the data position it stands for
    (the data order is a function of (seed, step))."""
    epoch, batch = divmod(step, steps_per_epoch)
    return {"step": step, "epoch": epoch, "batch_in_epoch": batch}


def periodic_actions(config, workdir, total_steps: int, first_chunk_end: int, lead: bool):
    """clu's progress report (steps/s, percent done and ETA in the log, every
    ``log_every_steps``) and, with ``config.profile_steps``, a profiler trace in ``workdir`` of
    that many steps from the end of the first (warm-up) chunk. None for each where clu cannot
    be imported: its periodic_actions imports TensorFlow, which accelerator images may lack."""
    try:
        from clu import periodic_actions as actions
    except ImportError as error:
        logging.warning("No progress report or profiling: clu.periodic_actions needs %s",
                        error.name or error)
        return None, None
    report = actions.ReportProgress(num_train_steps=total_steps,
                                    every_steps=config.log_every_steps, every_secs=None)
    profile = None
    if non_negative("profile_steps", config.profile_steps) and lead:
        profile = actions.Profile(logdir=workdir, num_profile_steps=config.profile_steps,
                                  profile_duration_ms=None, first_profile=first_chunk_end,
                                  every_steps=None, every_secs=None)
    return report, profile
