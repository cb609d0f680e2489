"""What a run trains and evaluates on, behind one interface per use.

``TrainInput`` gives the batches of a chunk ``(step, end)`` to its compiled training chunk; its
two implementations are the device-resident split (``ResidentTrainSplit``: the order is drawn on
the devices) and the tf.data stream (``StreamedTrainSplit``). ``EvalSplit`` gives the compiled
evaluation step every batch of a test split: resident and padded (``ResidentEvalSplit``) or
streamed (``StreamedEvalSplit``). ``load`` picks them from ``config.input_pipeline``. How the
data are ordered, padded and preprocessed is in ``input_pipeline``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from astrospectra_jax.data import catalogue
from astrospectra_jax.training import input_pipeline, sharding, trust_fit
from astrospectra_jax.training.configuration import ConfigError, choice, positive
from astrospectra_jax.training.steps import Steps

PIPELINES = ("device", "tfdata")


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


class TrainInput:
    """The training split as a compiled chunk consumes it: ``compile`` once, then
    ``state, metrics = self(state, step, end)`` per chunk."""

    num_train: int
    held_out: trust_fit.HeldOut  # the validation part (trust_fit)
    _compiled = None

    def function(self, steps: Steps):
        raise NotImplementedError

    def batches(self, step: int, end: int) -> tuple:
        """The chunk function's data arguments for steps ``step .. end - 1``."""
        raise NotImplementedError

    def compile(self, steps: Steps, state, start_step: int) -> None:
        self._compiled = self.function(steps).lower(
            state, *self.batches(start_step, start_step), np.int32(0)).compile()

    def __call__(self, state, step: int, end: int):
        return self._compiled(state, *self.batches(step, end), np.int32(end))


class ResidentTrainSplit(TrainInput):
    """The whole split replicated on every device; each chunk gathers its batches there, in the
    epoch permutations' order."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, mesh, steps_per_epoch: int):
        self.num_train = len(labels)
        self.arrays = (sharding.put_replicated(features, mesh),
                       sharding.put_replicated(labels.astype(np.int32), mesh))
        self.steps_per_epoch = steps_per_epoch
        self.permutations = None

    def function(self, steps: Steps):
        self.permutations = EpochPermutations(steps.epoch_permutations, self.steps_per_epoch)
        return steps.device_chunk

    def batches(self, step: int, end: int) -> tuple:
        return (*self.arrays, self.permutations(step))


class StreamedTrainSplit(TrainInput):
    """tf.data batches (this process's part of the split), stacked into the chunk's global
    arrays and padded with zeros to the chunk length (the padded steps are no-ops on device)."""

    def __init__(self, config, feature_key: str, num_train: int, feature_shape, dtype, mesh,
                 chunk: int, keep: np.ndarray | None = None):
        self.config, self.feature_key, self.mesh, self.chunk = config, feature_key, mesh, chunk
        self.num_train, self.feature_shape, self.dtype = num_train, feature_shape, dtype
        self.keep = keep  # the rows that train (None: all); the rest is the validation part
        self.stream: Iterator | None = None

    def function(self, steps: Steps):
        return steps.stream_chunk

    def batches(self, step: int, end: int) -> tuple:
        if self.stream is None:
            config = self.config
            self.stream = input_pipeline.tfdata_train_batches(
                config.dataset, data_dir=config.data_dir, feature_key=self.feature_key,
                batch_size=config.batch_size, seed=config.seed, start_step=step,
                steps_per_epoch=input_pipeline.steps_per_epoch(self.num_train, config.batch_size),
                shuffle_buffer=positive("shuffle_buffer", config.shuffle_buffer), keep=self.keep)
        local_batch = self.config.batch_size // jax.process_count()
        features = np.zeros((self.chunk, local_batch, *self.feature_shape), self.dtype)
        labels = np.zeros((self.chunk, local_batch), np.int32)
        for i in range(end - step):
            features[i], labels[i] = next(self.stream)
        return (sharding.global_batch(features, self.mesh, leading_axes=1),
                sharding.global_batch(labels, self.mesh, leading_axes=1))


class EvalSplit:
    """A split to evaluate on: its labels, and the compiled evaluation step's outputs per batch."""

    labels: np.ndarray

    def outputs(self, eval_batch, state) -> list:
        raise NotImplementedError


class ResidentEvalSplit(EvalSplit):
    """The split padded to whole batches (padding masked) and replicated on every device."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, mesh, batch_size: int):
        self.labels = labels.astype(np.int32)
        padded = input_pipeline.pad_to_batches(features, self.labels, batch_size)
        self.arrays = tuple(sharding.put_replicated(a, mesh) for a in padded)
        self.num_batches = len(padded[1]) // batch_size

    def outputs(self, eval_batch, state) -> list:
        return [eval_batch(state, *self.arrays, np.int32(i)) for i in range(self.num_batches)]


class StreamedEvalSplit(EvalSplit):
    """A TFDS split (the test split; its ``keep`` rows only, when given) streamed by tf.data,
    each process its rows of each global batch."""

    def __init__(self, config, feature_key: str, labels: np.ndarray, mesh, split: str = "test",
                 keep: np.ndarray | None = None):
        self.config, self.feature_key, self.mesh = config, feature_key, mesh
        self.labels, self.split, self.keep = labels.astype(np.int32), split, keep

    def outputs(self, eval_batch, state) -> list:
        batches = input_pipeline.tfdata_eval_batches(
            self.config.dataset, data_dir=self.config.data_dir, feature_key=self.feature_key,
            batch_size=self.config.batch_size, split=self.split, keep=self.keep)
        return [eval_batch(state, *(sharding.global_batch(a, self.mesh) for a in batch),
                           np.int32(0)) for batch in batches]


def load(config, spec: catalogue.DatasetSpec, mesh, chunk: int,
         splits: input_pipeline.Splits | None = None) -> tuple[TrainInput, EvalSplit]:
    """(train, test) as ``config.input_pipeline`` reads them: from TFDS, or from ``splits``
    (in-memory arrays, the device pipeline only)."""
    pipeline = choice("input_pipeline", config.input_pipeline, PIPELINES)
    feature_key = "image" if spec.modality == "image" else "spectrum"
    if splits is not None:
        if pipeline != "device":
            raise ConfigError(f"config.input_pipeline={pipeline!r}: in-memory splits train "
                              "through the 'device' pipeline only")
        splits = splits.checked(spec.feature_shape, spec.num_classes,
                                np.uint8 if spec.modality == "image" else np.float32)
        test = splits.test_features, splits.test_labels
    else:
        test = catalogue.load_arrays(config.dataset, "test", data_dir=config.data_dir)
    trust_fit.check(config, spec)
    if pipeline == "tfdata":
        keep, num_train, held = trust_fit.split_streamed(config, feature_key, mesh)
        train_input = StreamedTrainSplit(config, feature_key, num_train, test[0].shape[1:],
                                         test[0].dtype, mesh, chunk, keep)
        train_input.held_out = held
        return train_input, StreamedEvalSplit(config, feature_key, test[1], mesh)
    train: Any = ((splits.train_features, splits.train_labels) if splits is not None else
                  catalogue.load_arrays(config.dataset, "train", data_dir=config.data_dir))
    *train, held = trust_fit.split_resident(config, spec, *train, mesh)
    train_input = ResidentTrainSplit(*train, mesh, steps_per_epoch(config, len(train[1])))
    train_input.held_out = held
    return train_input, ResidentEvalSplit(*test, mesh, config.batch_size)


def steps_per_epoch(config, num_train: int) -> int:
    steps = input_pipeline.steps_per_epoch(num_train, config.batch_size)
    if steps == 0:
        raise ConfigError(f"config.batch_size={config.batch_size} exceeds the {num_train} "
                          f"training examples of {config.dataset}")
    return steps
