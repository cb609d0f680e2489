"""Device-resident input pipeline against a tf.data-fed loop, on the same compiled step.

    python -m benchmarks.pipeline --models lenet,simplecnn2 --dataset astrospectra_mnist/v2_synthetic_mini
    python -m benchmarks.pipeline --models conv1d --dataset line_astro_spectra/v2_synthetic_mini

Both sides run the training step of ``training_steps.make_steps`` with one configuration:

* device: the whole split lives on the devices; shuffling, batching, scaling and resizing
  happen inside the compiled chunk (``device_chunk``).
* tf.data: ``input_pipeline.tfdata_train_batches`` (``tfds.load`` -> shuffle -> batch ->
  prefetch -> numpy), each chunk of batches stacked and put on the devices as a batch-sharded
  global array (``sharding.global_batch``), then ``stream_chunk``.

The two alternate after warm-up; figures are medians over repeats. Synthetic configs are built
into ``--data-dir`` (a temporary folder by default) on first use.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from astrospectra_jax import models
from astrospectra_jax.data import catalogue  # noqa: E402
from astrospectra_jax.training import input_pipeline, sharding, train
from astrospectra_jax.training import inputs
from astrospectra_jax.training import state as training_state
from astrospectra_jax.training import steps as training_steps
from benchmarks.throughput import FOREVER, environment, make_config  # noqa: E402


def measure(name: str, args, data_dir: str) -> dict:
    spec = catalogue.info(args.dataset)
    size = spec.feature_shape[0] if spec.modality == "line" else args.size
    config = make_config(name, size, args.batch_size, args.dtype, args.steps_per_call,
                         args.dataset)
    config.data_dir = data_dir
    train.validate(config)
    mesh = sharding.make_mesh()
    features, labels = catalogue.load_arrays(args.dataset, "train", data_dir=data_dir)
    chunk = training_steps.resolve_steps_per_call(config)
    steps_per_epoch = input_pipeline.steps_per_epoch(len(labels), config.batch_size)
    tx, _ = training_steps.make_optimizer(config, steps_per_epoch)
    graphdef, state = training_state.init_state(config, spec, tx, mesh)
    steps = training_steps.make_steps(config, spec, graphdef, tx, mesh, steps_per_epoch, len(labels),
                             chunk)

    resident = (sharding.put_replicated(features, mesh),
                sharding.put_replicated(labels, mesh))
    permutations = inputs.EpochPermutations(steps.epoch_permutations, steps_per_epoch)
    device_chunk = steps.device_chunk.lower(state, *resident, permutations(0),
                                               FOREVER).compile()

    feature_key = "image" if spec.modality == "image" else "spectrum"
    batches = input_pipeline.tfdata_train_batches(
        args.dataset, data_dir=data_dir, feature_key=feature_key, batch_size=config.batch_size,
        seed=config.seed, start_step=0, steps_per_epoch=steps_per_epoch,
        shuffle_buffer=config.shuffle_buffer)

    def next_chunk():
        stacked = [next(batches) for _ in range(chunk)]
        return (sharding.global_batch(np.stack([f for f, _ in stacked]), mesh, 1),
                sharding.global_batch(np.stack([l for _, l in stacked]), mesh, 1))

    example = next_chunk()
    stream_chunk = steps.stream_chunk.lower(state, *example, FOREVER).compile()
    states = {"device": state, "tfdata": jax.tree.map(lambda a: a.copy(), state)}
    device_step = [0]

    def run_device(n: int) -> None:
        state, out = states["device"], None
        for _ in range(n // chunk):
            state, out = device_chunk(state, *resident, permutations(device_step[0]), FOREVER)
            device_step[0] += chunk
        jax.block_until_ready((state, out))
        states["device"] = state

    def run_tfdata(n: int) -> None:
        state, out = states["tfdata"], None
        for _ in range(n // chunk):
            state, out = stream_chunk(state, *next_chunk(), FOREVER)
        jax.block_until_ready((state, out))
        states["tfdata"] = state

    n = max(chunk, args.steps - args.steps % chunk)
    runs = {"device": run_device, "tfdata": run_tfdata}
    for run in runs.values():
        run(max(args.warmup, 1) * chunk)
    times = {key: [] for key in runs}
    for _ in range(args.repeats):
        for key, run in runs.items():
            began = time.perf_counter()
            run(n)
            times[key].append(time.perf_counter() - began)
    row = {"model": name, "input_size": size, "dataset": args.dataset,
           "batch_size": config.batch_size, "steps_per_call": chunk, "steps": n,
           "train_examples": len(labels)}
    for key in runs:
        row[f"{key}_examples_per_s"] = n * config.batch_size / statistics.median(times[key])
        row[f"{key}_times_s"] = times[key]
    row["device_over_tfdata"] = row["device_examples_per_s"] / row["tfdata_examples_per_s"]
    return row


def format_table(rows: list[dict]) -> str:
    lines = ["| model | size | batch | steps/call | device ex/s | tf.data ex/s | device/tf.data |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['input_size']} | {r['batch_size']} | "
                     f"{r['steps_per_call']} | {r['device_examples_per_s']:.0f} | "
                     f"{r['tfdata_examples_per_s']:.0f} | {r['device_over_tfdata']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="lenet,simplecnn2")
    parser.add_argument("--size", type=int, default=28, help="image input size (28 or 224)")
    parser.add_argument("--dataset", default="astrospectra_mnist/v2_synthetic_mini")
    parser.add_argument("--data-dir", default=None,
                        help="TFDS data dir (default: a temporary folder, built on use)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--dtype", choices=tuple(training_steps.DTYPES), default="float32")
    parser.add_argument("--steps-per-call", type=int, default=0)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    for name in args.models.split(","):
        models.input_sizes(name)  # unknown names fail before anything is built
    print(json.dumps(environment()))
    with tempfile.TemporaryDirectory(prefix="tfds_bench_") as tmp:
        data_dir = args.data_dir or tmp
        rows = []
        for name in args.models.split(","):
            rows.append(measure(name, args, data_dir))
            print(format_table(rows[-1:]), flush=True)
    print()
    print(format_table(rows))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_suffix(out.suffix + ".tmp")
        tmp_out.write_text(json.dumps({"environment": environment(), "args": vars(args),
                                       "rows": rows}, indent=1))
        tmp_out.replace(out)
    return rows


if __name__ == "__main__":
    main()
