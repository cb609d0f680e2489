"""One process of tests/test_multihost.py: ``python tests/multihost_worker.py MODE OUT ...``.

MODE ``train``: trains a tiny model on in-memory arrays in ``OUT/run`` (resuming where a
checkpoint is), process 0 then saves the final state to ``OUT/state.npz`` and the results to
``OUT/results.json``. With ``--preempt-at STEP`` the last process sends itself SIGTERM when the
checkpoint of STEP is saved (the loop's preemption path: every process stops at one step, which
JAX's preemption sync picks a little later); each process then writes the step it stopped at to
``OUT/stopped_<process>.json``.
MODE ``tfdata``: writes the labels and example ids this process reads over one tf.data epoch to
``OUT/tfdata_<process>.npz``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NUM_TRAIN, NUM_TEST, BATCH = 96, 40, 16


def tiny_splits():
    import numpy as np

    from astrospectra_jax.training import input_pipeline

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, NUM_TRAIN + NUM_TEST).astype(np.int32)
    # learnable: the class sets the brightness of one row, so accuracy moves off chance
    images = rng.integers(0, 64, (len(labels), 28, 28, 1), dtype=np.uint8)
    images[np.arange(len(labels)), 4 + 8 * labels] += 150
    return input_pipeline.Splits(images[:NUM_TRAIN], labels[:NUM_TRAIN],
                                 images[NUM_TRAIN:], labels[NUM_TRAIN:])


def train(args, out: Path) -> None:
    import jax
    import numpy as np

    from astrospectra_jax.training import checkpointing, loop, train as training
    from configs.base import get_base_config

    config = get_base_config()
    config.dataset = "astrospectra_mnist/v2_synthetic"
    config.model.name = "simplecnn1"
    config.batch_size = BATCH
    config.num_epochs = args.epochs
    config.max_steps = args.steps
    config.checkpoint_every_steps = 2
    config.eval_every_epochs = 0
    config.log_every_steps = 1
    config.validation_fraction = 0.0  # every process's part trains (the coverage check)
    if args.preempt_at and jax.process_index() == jax.process_count() - 1:
        save = checkpointing.save

        def save_then_preempt(manager, state, progress):
            save(manager, state, progress)
            if progress["step"] == args.preempt_at:
                os.kill(os.getpid(), signal.SIGTERM)

        checkpointing.save = save_then_preempt
    final = {}
    run_loop = loop.train

    def keep_final_state(*loop_args, **kwargs):
        outcome = run_loop(*loop_args, **kwargs)
        final["state"] = outcome.state
        return outcome

    loop.train = keep_final_state
    try:
        results = training.train_and_evaluate(config, str(out / "run"), splits=tiny_splits())
    except training.Preempted as stopped:
        results = {"preempted": True, "step": stopped.step}
        (out / f"stopped_{jax.process_index()}.json").write_text(json.dumps(stopped.step))
    if jax.process_index() == 0:
        summary = {"preempted": bool(results.get("preempted")), "step": results.get("step"),
                   "processes": jax.process_count(), "devices": jax.device_count()}
        if not results.get("preempted"):
            leaves = jax.tree.leaves(jax.device_get(final["state"].params))
            np.savez(out / "state.npz", *[np.asarray(leaf) for leaf in leaves])
            summary.update(accuracy=results["accuracy"], test_loss=results["test_loss"],
                           resumed_from=results["resumed_from_step"])
        (out / "results.json").write_text(json.dumps(summary))


def tfdata(out: Path) -> None:
    import jax
    import numpy as np
    import tensorflow as tf

    from astrospectra_jax.training import input_pipeline

    import tensorflow_datasets as tfds

    splits = tiny_splits()
    ids = np.arange(NUM_TRAIN, dtype=np.uint8)  # stamped into the first pixel of each example
    features = splits.train_features.copy()
    features[:, 0, 0, 0] = ids

    def tf_dataset(name, split, data_dir, feature_key, keep=None):  # the part asked for
        assert keep is None  # no hold-out in this test
        examples = tf.data.Dataset.from_tensor_slices((features, splits.train_labels))
        if split == "train":
            return examples
        index = tfds.even_splits("train", jax.process_count(), drop_remainder=True).index(split)
        part = NUM_TRAIN // jax.process_count()
        return examples.skip(index * part).take(part)

    input_pipeline._tf_dataset = tf_dataset
    batches = input_pipeline.tfdata_train_batches(
        "unused", data_dir=None, feature_key="image", batch_size=BATCH, seed=0, start_step=0,
        steps_per_epoch=NUM_TRAIN // BATCH, shuffle_buffer=NUM_TRAIN)
    epoch = [next(batches) for _ in range(NUM_TRAIN // BATCH)]
    np.savez(out / f"tfdata_{jax.process_index()}.npz",
             ids=np.concatenate([f[:, 0, 0, 0] for f, _ in epoch]),
             labels=np.concatenate([labels for _, labels in epoch]),
             rows=np.array([len(f) for f, _ in epoch]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("train", "tfdata"))
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--preempt-at", type=int, default=0)
    parser.add_argument("--coordinator", default=None)
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--cpu-devices", type=int, default=1)
    args = parser.parse_args()
    if args.mode == "train":
        # as on a bare accelerator image, and seconds faster to start: no TensorFlow behind TFDS
        # and clu (metrics go to tensorboard's own writer)
        for name in ("tensorflow", "tensorflow_datasets", "clu"):
            sys.modules[name] = None
    from absl import logging

    from astrospectra_jax.training import sharding

    if args.num_processes > 1:
        sharding.initialize_distributed(args.coordinator, args.num_processes, args.process_id,
                                        args.cpu_devices)
    else:
        import jax

        jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    import jax

    # as main.py: process 0 reports for everyone
    logging.set_verbosity(logging.INFO if jax.process_index() == 0 else logging.WARNING)
    out = Path(args.out)
    train(args, out) if args.mode == "train" else tfdata(out)


if __name__ == "__main__":
    main()
