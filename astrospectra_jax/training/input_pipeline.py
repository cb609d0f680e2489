"""Input pipelines: whole splits resident on the devices (default), or streamed with tf.data.

Device pipeline (``config.input_pipeline = "device"``). The AstroSpectra splits are small (v2
train is 42,454 x 784 bytes = 33 MB as uint8), so each split is put on every device once, as
uint8 images or float32 line vectors, *replicated* (``NamedSharding(mesh, P())``). Everything
after that happens inside the compiled training step: the per-epoch shuffle
(``jax.random.permutation`` with a key folded from the seed and the epoch), slicing the batch out
of the permutation, optional augmentation, uint8 -> float scaling and the 28 -> 224 bilinear
resize. The batch is constrained to ``P("data")`` right after the gather, so each device
preprocesses only its own slice. Replicated rather than sharded storage: from a replicated
split each device reads its rows of the batch locally, with no collective; from a split sharded
over ``"data"``, XLA partitions the random gather as an all-gather of the indices plus an
all-reduce of the whole gathered batch, every step (compiled HLO; timing in
benchmarks/README.md, "Input pipeline"). One copy of a 33 MB split per device is negligible on
any accelerator.

The order of the data is a pure function of ``(seed, epoch, step)``: step ``s`` reads positions
``[p * B, (p + 1) * B)`` of the permutation of epoch ``s // steps_per_epoch`` (``p = s mod
steps_per_epoch``). The last ``N mod B`` examples of each (shuffled) epoch are dropped, so every
step sees a full batch; a different subset is dropped each epoch. Evaluation covers the whole
test split: it is padded to a whole number of batches and the padding is masked out.

Streaming pipeline (``"tfdata"``): for datasets too large for device memory. Each process
``tfds.load``s only its own part of the split (``tfds.split_for_jax_process``, equal parts), in
stored order, shuffles it with a seed derived from ``(seed, epoch)`` (deterministic tf.data),
batches it with its share of the global batch and skips the batches already trained on when
resuming; the global batch is the processes' rows side by side
(``make_array_from_process_local_data``). Over an epoch every training example is read by
exactly one process. A multi-process run therefore does not repeat the single-process batch
order (a different process count draws different batches); it is deterministic for a given
process count, and resumes exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------- in-memory splits

@dataclasses.dataclass(frozen=True)
class Splits:
    """Whole train and test splits as numpy arrays: the device pipeline's data without TFDS.

    Features as stored (uint8 images (N, 28, 28, 1) or float32 line vectors (N, 721)), labels
    0-based class indices. ``train_and_evaluate(config, workdir, splits=...)`` trains on them;
    ``config.dataset`` then only says what they hold (modality, class names).
    """

    train_features: np.ndarray
    train_labels: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray

    def checked(self, feature_shape: tuple[int, ...], num_classes: int, dtype) -> "Splits":
        """These splits with labels as int32 and features as ``dtype``; ValueError naming the
        field whose shape or label range does not fit the dataset."""
        arrays = {}
        for split in ("train", "test"):
            features = np.asarray(getattr(self, f"{split}_features"))
            labels = np.asarray(getattr(self, f"{split}_labels"))
            if features.shape[1:] != tuple(feature_shape):
                raise ValueError(f"Splits.{split}_features has shape {features.shape}; the "
                                 f"dataset's examples are {tuple(feature_shape)}")
            if labels.shape != (len(features),):
                raise ValueError(f"Splits.{split}_labels has shape {labels.shape}, expected "
                                 f"({len(features)},): one label per example")
            if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(f"Splits.{split}_labels must lie in [0, {num_classes}), "
                                 f"found {labels.min()}..{labels.max()}")
            arrays[f"{split}_features"] = features.astype(dtype, copy=False)
            arrays[f"{split}_labels"] = labels.astype(np.int32, copy=False)
        return Splits(**arrays)


# ----------------------------------------------------------------------------- data order

def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full batches per epoch (the remainder of each shuffled epoch is dropped)."""
    return num_examples // batch_size


def epoch_permutation(data_key: jax.Array, epoch: jax.Array, num_examples: int) -> jax.Array:
    """The order of the training examples in ``epoch``: a permutation of ``range(num_examples)``."""
    return jax.random.permutation(jax.random.fold_in(data_key, epoch), num_examples)


def batch_indices(permutation: jax.Array, position: jax.Array, batch_size: int) -> jax.Array:
    """Indices of the ``position``-th batch of an epoch's permutation."""
    return jax.lax.dynamic_slice_in_dim(permutation, position * batch_size, batch_size)


# ----------------------------------------------------------------------------- preprocessing

def to_float(features: jax.Array, modality: str) -> jax.Array:
    """Model input scale: images uint8 -> [0, 1]; line vectors standardised per spectrum.

    Line vectors are in flux units whose scale varies by orders of magnitude between objects,
    so each spectrum is brought to zero mean and unit variance (the shape is what classifies).
    """
    if modality == "image":
        return features.astype(jnp.float32) / 255.0
    features = features.astype(jnp.float32)
    mean = features.mean(axis=-1, keepdims=True)
    std = features.std(axis=-1, keepdims=True)
    return (features - mean) / jnp.maximum(std, 1e-6)


def random_shift(features: jax.Array, key: jax.Array, max_shift: int) -> jax.Array:
    """Shift each example along wavelength by an integer in ``[-max_shift, max_shift]`` bins.

    The image rows hold consecutive wavelength bins (row-major), so the shift acts on the
    flattened example, not as a 2-D translation; edges are extended with the edge value.
    """
    batch = features.shape[0]
    flat = features.reshape(batch, -1)
    padded = jnp.pad(flat, ((0, 0), (max_shift, max_shift)), mode="edge")
    shifts = jax.random.randint(key, (batch,), 0, 2 * max_shift + 1)
    shifted = jax.vmap(lambda row, start: jax.lax.dynamic_slice_in_dim(row, start, flat.shape[1])
                       )(padded, shifts)
    return shifted.reshape(features.shape)


def resize(images: jax.Array, size: int) -> jax.Array:
    """Bilinear resize of (B, H, W, C) images to (B, size, size, C), e.g. 28 -> 224."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return jax.image.resize(images, (images.shape[0], size, size, images.shape[3]), "bilinear")


def preprocess(features: jax.Array, *, modality: str, input_size: int, max_shift: int = 0,
               key: jax.Array | None = None) -> jax.Array:
    """Stored features (uint8 images / float32 lines) -> float32 model input, on device."""
    x = to_float(features, modality)
    if max_shift > 0 and key is not None:
        x = random_shift(x, key, max_shift)
    if modality == "image":
        x = resize(x, input_size)
    return x


# ----------------------------------------------------------------------------- evaluation

def pad_to_batches(features: np.ndarray, labels: np.ndarray, batch_size: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pad a split to a whole number of batches; returns (features, labels, mask of real rows)."""
    n = len(labels)
    total = max(1, -(-n // batch_size)) * batch_size
    pad = total - n
    features = np.concatenate([features, np.zeros((pad, *features.shape[1:]), features.dtype)])
    labels = np.concatenate([labels, np.zeros(pad, labels.dtype)])
    mask = np.arange(total) < n
    return features, labels, mask


# ----------------------------------------------------------------------------- tf.data streaming

def _process_slice(batch: np.ndarray) -> np.ndarray:
    """This process's rows of a global batch (all of it on a single host)."""
    per_process = batch.shape[0] // jax.process_count()
    start = jax.process_index() * per_process
    return batch[start:start + per_process]


def _process_split(split: str, process_index: int | None, process_count: int | None):
    """This process's equal part of ``split`` (the whole split for a single process)."""
    import tensorflow_datasets as tfds

    count = jax.process_count() if process_count is None else process_count
    if count == 1:
        return split
    index = jax.process_index() if process_index is None else process_index
    return tfds.split_for_jax_process(split, process_index=index, process_count=count,
                                      drop_remainder=True)


def tfdata_num_train(name: str, data_dir: str | None) -> int:
    """Training examples the tf.data pipeline reads over all processes (equal parts: the
    remainder of the split over the processes is left out)."""
    import tensorflow_datasets as tfds

    total = tfds.builder(name, data_dir=data_dir).info.splits["train"].num_examples
    return total - total % jax.process_count()


def _part(keep: np.ndarray, process_index: int | None, count: int) -> tuple[str, np.ndarray]:
    """This process's equal part of the train split as an explicit slice (equal parts, the
    remainder left out, as ``_process_split``) and the ``keep`` rows within it."""
    index = jax.process_index() if process_index is None else process_index
    size = len(keep) // count
    return f"train[{index * size}:{(index + 1) * size}]", keep[index * size:(index + 1) * size]


def tfdata_kept_per_process(keep: np.ndarray, count: int) -> int:
    """Training examples each process reads when only the ``keep`` rows train: the fewest over
    the processes' parts (a full batch order needs the same count everywhere)."""
    return min(int(_part(keep, i, count)[1].sum()) for i in range(count))


def _tf_dataset(name: str, split, data_dir: str | None, feature_key: str, keep=None):
    """The split as (feature, label) in stored order; ``keep`` (bool per row of ``split``,
    optional): only those rows (the training part left by the validation hold-out)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    ds = tfds.load(name, split=split, data_dir=data_dir, shuffle_files=False)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options)
    if keep is not None:
        mask = tf.constant(np.asarray(keep, bool))
        ds = ds.enumerate().filter(lambda i, ex: tf.gather(mask, i)).map(lambda i, ex: ex)
    return ds.map(lambda ex: (ex[feature_key], tf.cast(ex["label"], tf.int32)),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def tfdata_train_batches(name: str, *, data_dir: str | None, feature_key: str, batch_size: int,
                         seed: int, start_step: int, steps_per_epoch: int, shuffle_buffer: int,
                         process_index: int | None = None, process_count: int | None = None,
                         keep: np.ndarray | None = None
                         ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """This process's rows of the global training batches from ``start_step`` on (endless),
    read from this process's part of the split only.

    Epoch ``e`` is the part shuffled with seed ``(seed, e)``; resuming at step ``s`` skips the
    first ``s mod steps_per_epoch`` batches of epoch ``s // steps_per_epoch``. The process
    index and count default to JAX's. ``keep`` (bool per training example): only those train
    (the validation hold-out's training part), each process those of its part.
    """
    import tensorflow as tf

    count = jax.process_count() if process_count is None else process_count
    split, part_keep = ((_process_split("train", process_index, count), None) if keep is None
                        else _part(keep, process_index, count))
    epoch, position = divmod(start_step, steps_per_epoch)
    while True:
        ds = _tf_dataset(name, split, data_dir, feature_key, part_keep)
        epoch_seed = int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] >> 1)
        ds = ds.shuffle(shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        ds = ds.batch(batch_size // count, drop_remainder=True)
        ds = ds.take(steps_per_epoch).skip(position)
        yield from ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
        epoch, position = epoch + 1, 0


def tfdata_eval_batches(name: str, *, data_dir: str | None, feature_key: str, batch_size: int,
                        split: str = "test", keep: np.ndarray | None = None
                        ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The whole split (its ``keep`` rows only, when given) in global batches, the last one
    padded: this process's rows of (features, labels, mask) of each (every process reads the
    whole split, in order)."""
    import tensorflow as tf

    ds = _tf_dataset(name, split, data_dir, feature_key, keep).batch(batch_size)
    for features, labels in ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator():
        features, labels, mask = pad_to_batches(features, labels, batch_size)
        yield _process_slice(features), _process_slice(labels), _process_slice(mask)
