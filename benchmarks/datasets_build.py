"""How long each synthetic dataset takes to build, and the simulator's spectra per second.

    python -m benchmarks.datasets_build                       # the *_synthetic_mini configs
    python -m benchmarks.datasets_build --configs all         # every synthetic config
    python -m benchmarks.datasets_build --configs astrospectra_mnist/v2_synthetic --simulate 0

Each config is built from scratch into its own temporary TFDS data dir through the same call
training uses (``catalogue.load_arrays``, which runs ``download_and_prepare`` for an unprepared
synthetic config), then its train split is read back; build time excludes the read. The
simulator figure times ``simulator.simulate`` alone (no image/line conversion, no TFDS).
Importing TensorFlow/TFDS is done once before the builds and reported separately.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from astrospectra_jax.data import catalogue, simulator
from astrospectra_jax.data import sources, tasks  # noqa: E402


def synthetic_configs(which: str) -> list[str]:
    names = [n for n in catalogue.KNOWN_DATASETS if n != "fashion_mnist"
             and catalogue.info(n).synthetic]
    if which == "all":
        return names
    if which == "mini":
        return [n for n in names if n.endswith("_mini")]
    chosen = which.split(",")
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise SystemExit(f"not synthetic configs: {', '.join(unknown)}; choose from "
                         f"{', '.join(names)}, 'mini' or 'all'")
    return chosen


def build_time(name: str) -> dict:
    import tensorflow_datasets as tfds

    # The image and line builders of a task share simulated chunks through an in-process
    # cache; clear it so that every config is timed from scratch.
    cache_clear = getattr(getattr(sources, "_simulate_chunk", None), "cache_clear", None)
    if cache_clear is not None:
        cache_clear()
    with tempfile.TemporaryDirectory(prefix="tfds_build_") as data_dir:
        began = time.perf_counter()
        catalogue.load_arrays(name, "test", data_dir=data_dir)  # builds every split
        built = time.perf_counter() - began
        began = time.perf_counter()
        features, labels = catalogue.load_arrays(name, "train", data_dir=data_dir)
        read = time.perf_counter() - began
        test = tfds.builder(name, data_dir=data_dir).info.splits["test"].num_examples
    examples = len(labels) + test
    return {"dataset": name, "train_examples": len(labels), "test_examples": test,
            "build_s": built, "examples_per_s": examples / built, "read_train_s": read,
            "feature_shape": list(features.shape[1:])}


def simulator_rate(task: str, n: int, repeats: int) -> dict:
    simulator.simulate(task, min(n, 64), seed=0)  # caches (broadened line bases) warm up
    times = []
    for seed in range(repeats):
        began = time.perf_counter()
        simulator.simulate(task, n, seed=seed + 1)
        times.append(time.perf_counter() - began)
    return {"task": task, "spectra": n, "seconds": statistics.median(times),
            "spectra_per_s": n / statistics.median(times), "times_s": times}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="mini",
                        help="'mini', 'all' or comma-separated synthetic dataset names")
    parser.add_argument("--simulate", type=int, default=2000,
                        help="spectra per simulator timing (0: skip)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    results = {"builds": [], "simulator": []}
    if args.simulate:
        print("| task | spectra | seconds | spectra/s |\n|---|---|---|---|")
        for task in tasks.CLASS_NAMES:
            row = simulator_rate(task, args.simulate, args.repeats)
            results["simulator"].append(row)
            print(f"| {task} | {row['spectra']} | {row['seconds']:.2f} | "
                  f"{row['spectra_per_s']:.0f} |", flush=True)
    configs = synthetic_configs(args.configs)
    began = time.perf_counter()
    import tensorflow as tf  # noqa: F401  (imports and TF start-up are not build time)
    import tensorflow_datasets as tfds

    if configs:
        tfds.builder(configs[0])
    results["startup_s"] = time.perf_counter() - began
    if configs:
        print(f"\nTensorFlow/TFDS start-up (not counted below): {results['startup_s']:.1f} s")
        print("\n| dataset | train + test | build s | examples/s | read train s |\n"
              "|---|---|---|---|---|")
    for name in configs:
        row = build_time(name)
        results["builds"].append(row)
        print(f"| {name} | {row['train_examples']} + {row['test_examples']} | "
              f"{row['build_s']:.1f} | {row['examples_per_s']:.0f} | {row['read_train_s']:.2f} |",
              flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps({"args": vars(args), **results}, indent=1))
        tmp.replace(out)
    return results


if __name__ == "__main__":
    main()
