"""Training examples/s against the number of devices (data parallel, the project's own step).

    python -m benchmarks.scaling --models simplecnn2 --devices 1,2,4,8
    python -m benchmarks.scaling --models resnet18 --size 224 --per-device-batch 32

On CPU every device count runs in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``: the N simulated devices share the same
cores, so the figures measure what sharding costs (partitioning, collectives, the per-device
gather and resize), not a speed-up. On GPU/TPU hosts the device counts are subsets of the real
devices, measured in one process (a mesh over the first N devices).

Weak scaling by default: the global batch is ``--per-device-batch`` x N, as the project's
configs do when given more devices; ``--global-batch`` fixes the global batch instead (strong
scaling; it must divide by every N).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def batch_for(args, n: int) -> int:
    return args.global_batch or args.per_device_batch * n


def simulated(name: str, n: int, args) -> dict:
    """One run of benchmarks.throughput in a fresh process with N host devices."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split()
             if not f.startswith("--xla_force_host_platform_device_count")]
    env["XLA_FLAGS"] = " ".join(flags + [f"--xla_force_host_platform_device_count={n}"])
    env["JAX_PLATFORMS"] = "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        command = [sys.executable, "-m", "benchmarks.throughput", "--models", name,
                   "--sizes", str(args.size), "--batch-size", str(batch_for(args, n)),
                   "--dtype", args.dtype, "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "--repeats", str(args.repeats), "--steps-per-call",
                   str(args.steps_per_call), "--no-torch", "--no-eval", "--out", str(out)]
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{name} on {n} simulated devices failed:\n{result.stderr[-3000:]}")
        data = json.loads(out.read_text())
    row = data["rows"][0]
    if data["environment"]["device_count"] != n:
        raise RuntimeError(f"asked for {n} devices, the run saw "
                           f"{data['environment']['device_count']}")
    return row


def real(name: str, n: int, args) -> dict:
    """In-process run on a mesh over the first N accelerator devices."""
    import jax

    from astrospectra_jax.data import catalogue
    from astrospectra_jax.training import sharding
    from benchmarks import throughput

    mesh = jax.make_mesh((n,), (sharding.DATA_AXIS,), devices=jax.devices()[:n],
                         axis_types=(jax.sharding.AxisType.Auto,))
    config = throughput.make_config(name, args.size, batch_for(args, n), args.dtype,
                                    args.steps_per_call)
    spec = catalogue.info(config.dataset)
    features, labels = throughput.random_split(spec, max(4096, 2 * config.batch_size))
    runner = throughput.jax_runner(config, features, labels, mesh=mesh)
    runner.train(max(args.warmup, 1))
    times = [throughput.timed(runner.train, args.steps) for _ in range(args.repeats)]
    return {"model": name, "input_size": args.size, "batch_size": config.batch_size,
            "jax_train_examples_per_s": args.steps * config.batch_size / statistics.median(times),
            "jax_train_times_s": times}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="simplecnn2")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--devices", default="1,2,4,8", help="comma-separated device counts")
    parser.add_argument("--per-device-batch", type=int, default=32)
    parser.add_argument("--global-batch", type=int, default=0,
                        help="fixed global batch (strong scaling); 0: per-device x N")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps-per-call", type=int, default=0)
    parser.add_argument("--real", action="store_true",
                        help="use the real devices of this host (GPU/TPU) instead of simulated "
                             "CPU devices; the default when an accelerator is present")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.devices.split(",")]

    use_real = args.real
    if not use_real:
        import jax

        use_real = jax.default_backend() != "cpu"
        if use_real:
            counts = [n for n in counts if n <= jax.device_count()]
    rows = []
    print(f"| model | size | devices ({'real' if use_real else 'simulated CPU'}) | global batch "
          f"| examples/s | per device | examples/s vs {counts[0]} device(s) |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for name in args.models.split(","):
        first = None
        for n in counts:
            row = (real if use_real else simulated)(name, n, args)
            rate = row["jax_train_examples_per_s"]
            first = first or rate
            row.update(devices=n, simulated=not use_real, per_device_examples_per_s=rate / n,
                       relative_to_first=rate / first)
            rows.append(row)
            print(f"| {name} | {args.size} | {n} | {row['batch_size']} | {rate:.0f} | "
                  f"{rate / n:.0f} | {rate / first:.2f}x |", flush=True)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        tmp.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
        tmp.replace(out)
    return rows


if __name__ == "__main__":
    main()
