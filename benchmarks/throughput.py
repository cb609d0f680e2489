"""Training and evaluation throughput of the project's compiled steps against PyTorch.

    python -m benchmarks.throughput --models resnet18,simplecnn2 --sizes 28 --out /tmp/tp.json
    python -m benchmarks.throughput --models resnet18 --sizes 224 --batch-size-224 32 --steps 3

JAX side: the very functions ``train_and_evaluate`` compiles (``training_steps.make_steps``: the
device-resident input pipeline with its on-device shuffle, uint8 -> float scaling and the
28 -> 224 bilinear resize, the model, the loss, Adam, the donated state) and its evaluation step.
PyTorch side: the same architecture (``benchmarks/torch_models.py``, parameter counts asserted
equal), the same batch, the same on-the-fly preprocessing (random batch from a resident uint8
tensor, /255, bilinear resize), Adam, eager mode, all CPU threads or CUDA when available.
``--dtype bfloat16`` is mixed precision on both sides: float32 parameters, bfloat16 compute
(JAX: the models' ``dtype``; torch: ``torch.autocast``).

After warm-up the two alternate, JAX then torch, ``--repeats`` times; each figure is the median
over repeats, so a load spike on a shared machine hits both sides alike. Achieved FLOP/s come
from XLA's cost analysis of the lowered step of the model built with XLA's kernels (its FLOPs
per step / median step time; the CPU kernels' loops would be counted once) and are set against
the device's peak where it is known (``PEAK_FLOPS``). Training data are random images
(throughput does not depend on pixel values) unless ``--dataset`` names a TFDS dataset.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # configs/ and benchmarks/ as packages, as main.py sees them

from astrospectra_jax import models
from astrospectra_jax.data import catalogue  # noqa: E402
from astrospectra_jax.training import input_pipeline, sharding, train
from astrospectra_jax.training import inputs
from astrospectra_jax.training import state as training_state
from astrospectra_jax.training import steps as training_steps
from configs.base import get_base_config  # noqa: E402

# Dense peak FLOP/s per chip, (bfloat16, float32), keyed by a substring of jax's device_kind.
# NVIDIA float32: the TF32 tensor-core peak, which XLA's default matmul precision uses on
# Ampere and later. TPU float32: XLA's default precision runs float32 matmuls as one bfloat16
# pass, so the bfloat16 peak applies. Sources: NVIDIA H100/H200/A100 datasheets, Cloud TPU
# system-architecture pages.
PEAK_FLOPS: dict[str, tuple[float, float]] = {
    "H200": (989e12, 494e12),
    "H100 PCIe": (756e12, 378e12),
    "H100": (989e12, 494e12),  # SXM / HBM3
    "A100": (312e12, 156e12),
    "TPU v4": (275e12, 275e12),
    "TPU v5 lite": (197e12, 197e12),  # v5e
    "TPU v5e": (197e12, 197e12),
    "TPU v5p": (459e12, 459e12),
    "TPU v5": (459e12, 459e12),  # v5p reports "TPU v5"
}
IMAGE_DATASET = "astrospectra_mnist/v2_synthetic"  # only its spec is read unless --dataset
LINE_DATASET = "line_astro_spectra/v2_synthetic"
FOREVER = np.int32(2**31 - 1)  # end_step: no step of a timed chunk is a no-op


def peak_flops(device_kind: str, dtype: str) -> float | None:
    for key, (bf16, fp32) in PEAK_FLOPS.items():
        if key.lower() in device_kind.lower():
            return bf16 if dtype == "bfloat16" else fp32
    return None


def make_config(name: str, size: int, batch_size: int, dtype: str, steps_per_call: int = 0,
                dataset: str | None = None):
    config = get_base_config()
    config.dataset = dataset or (LINE_DATASET if models.is_line_model(name) else IMAGE_DATASET)
    config.model.name = name
    config.model.input_size = size
    config.model.dtype = dtype
    config.batch_size = batch_size
    config.steps_per_call = steps_per_call
    config.optimizer.name = "adam"
    config.schedule = "constant"
    return config


def random_split(spec: catalogue.DatasetSpec, num_examples: int, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Stand-in training data of the dataset's stored type and shape."""
    rng = np.random.default_rng(seed)
    if spec.modality == "image":
        features = rng.integers(0, 256, (num_examples, *spec.feature_shape), dtype=np.uint8)
    else:
        features = rng.lognormal(0.0, 1.0, (num_examples, *spec.feature_shape)).astype(np.float32)
    return features, rng.integers(0, spec.num_classes, num_examples).astype(np.int32)


def cost_flops(stage) -> float | None:
    """FLOPs of a lowered or compiled program, per XLA's cost analysis."""
    costs = stage.cost_analysis()
    costs = costs if isinstance(costs, dict) else (costs[0] if costs else {})
    flops = costs.get("flops") if costs else None
    return float(flops) if flops and flops > 0 else None


@dataclasses.dataclass
class Runner:
    """Timed callables: ``run(n)`` performs n steps and waits for them to finish."""

    train: Callable[[int], None]
    evaluate: Callable[[int], None]
    train_flops: float | None = None  # per step
    eval_flops: float | None = None
    params: int = 0
    compile_s: float = 0.0


def jax_runner(config, features: np.ndarray, labels: np.ndarray, *, mesh=None,
               eval_examples: int | None = None) -> Runner:
    """The project's own compiled training chunk and evaluation step over resident data."""
    mesh = mesh or sharding.make_mesh()
    spec = catalogue.info(config.dataset)
    train.validate(config)
    chunk = training_steps.resolve_steps_per_call(config)
    batch_size = config.batch_size
    steps_per_epoch = input_pipeline.steps_per_epoch(len(labels), batch_size)
    tx, _ = training_steps.make_optimizer(config, steps_per_epoch)
    graphdef, state = training_state.init_state(config, spec, tx, mesh)
    steps = training_steps.make_steps(config, spec, graphdef, tx, mesh, steps_per_epoch, len(labels),
                             chunk)
    train_data = (sharding.put_replicated(features, mesh),
                  sharding.put_replicated(labels, mesh))
    n_eval = eval_examples or min(len(labels), 4 * batch_size)
    test = tuple(sharding.put_replicated(a, mesh) for a in input_pipeline.pad_to_batches(
        features[:n_eval], labels[:n_eval], batch_size))
    num_eval_batches = test[1].shape[0] // batch_size

    # As in train_and_evaluate: each epoch's data order is computed once, outside the chunk
    # (its cost is part of the timed steps).
    permutations = inputs.EpochPermutations(steps.epoch_permutations, steps_per_epoch)
    began = time.perf_counter()
    train_chunk = steps.device_chunk.lower(state, *train_data, permutations(0),
                                              FOREVER).compile()
    eval_step = steps.eval_batch.lower(state, *test, np.int32(0)).compile()
    compile_s = time.perf_counter() - began
    train_flops, eval_flops = reference_flops(config, spec, tx, mesh, steps_per_epoch,
                                              len(labels), chunk, state, train_data,
                                              permutations(0), test)
    holder = {"state": state, "step": 0}

    def run_train(n: int) -> None:
        state, out, step = holder["state"], None, holder["step"]
        for _ in range(math.ceil(n / chunk)):
            state, out = train_chunk(state, *train_data, permutations(step), FOREVER)
            step += chunk
        jax.block_until_ready((state, out))
        holder["state"], holder["step"] = state, step

    def run_eval(n: int) -> None:
        outs = [eval_step(holder["state"], *test, np.int32(i % num_eval_batches))
                for i in range(n)]
        jax.block_until_ready(outs)

    params = models.param_count(nnx_abstract_model(config, spec))
    return Runner(run_train, run_eval, train_flops / chunk if train_flops else None,
                  eval_flops, params, compile_s)


def reference_flops(config, spec, tx, mesh, steps_per_epoch, num_examples, chunk, state,
                    train_data, permutation, test) -> tuple[float | None, float | None]:
    """FLOPs of one training chunk and one evaluation step, from XLA's cost analysis of the
    same steps with the model built with XLA's kernels: the CPU kernels loop over batch
    chunks, and a loop's body would be counted once."""
    from flax import nnx

    config = with_kernels(config, "xla")
    graphdef = nnx.graphdef(nnx_abstract_model(config, spec))  # the state fits either kernels
    steps = training_steps.make_steps(config, spec, graphdef, tx, mesh, steps_per_epoch,
                                      num_examples, chunk)
    train_lowered = steps.device_chunk.lower(state, *train_data, permutation, FOREVER)
    eval_lowered = steps.eval_batch.lower(state, *test, np.int32(0))
    return cost_flops(train_lowered), cost_flops(eval_lowered)


def with_kernels(config, kernels: str):
    config = config.copy_and_resolve_references()
    config.model.kernels = kernels
    return config


def nnx_abstract_model(config, spec):
    from flax import nnx

    return nnx.eval_shape(lambda: models.create(
        config.model.name, num_classes=spec.num_classes, input_size=config.model.input_size,
        kernels=config.model.kernels, dtype=training_steps.DTYPES[config.model.dtype],
        rngs=nnx.Rngs(0)))


def torch_runner(name: str, size: int, batch_size: int, dtype: str, features: np.ndarray,
                 labels: np.ndarray, num_classes: int, device: str | None = None) -> Runner:
    """The PyTorch reference: same batch, preprocessing, optimizer; eager mode."""
    import torch
    import torch.nn.functional as F

    from benchmarks import torch_models

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = torch_models.create(name, num_classes=num_classes, input_size=size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    image = features.ndim == 4
    # Resident data as stored: uint8 NCHW images or float32 line vectors.
    data = torch.from_numpy(features.transpose(0, 3, 1, 2).copy() if image else features)
    data, targets = data.to(device), torch.from_numpy(labels.astype(np.int64)).to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16,
                              enabled=dtype == "bfloat16")
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def batch(indices):
        x = data[indices]
        if image:
            x = x.float() / 255.0
            if size != x.shape[-1]:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        return x, targets[indices]

    def run_train(n: int) -> None:
        model.train()
        for _ in range(n):
            indices = torch.randint(0, len(data), (batch_size,), device=device,
                                    generator=generator)
            x, y = batch(indices)
            with autocast:
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            (logits.argmax(-1) == y).float().mean()
        sync()

    def run_eval(n: int) -> None:
        model.eval()
        with torch.no_grad(), autocast:
            for i in range(n):
                indices = torch.arange(i * batch_size, (i + 1) * batch_size, device=device) % len(data)
                x, y = batch(indices)
                logits = model(x).float()
                F.cross_entropy(logits, y, reduction="sum")
                logits.argmax(-1)
        sync()

    return Runner(run_train, run_eval, params=torch_models.param_count(model))


def timed(fn: Callable[[int], None], n: int) -> float:
    began = time.perf_counter()
    fn(n)
    return time.perf_counter() - began


def measure(name: str, size: int, args) -> dict:
    """One model at one size: both frameworks, interleaved; medians of examples/s."""
    batch_size = args.batch_size_224 if size == 224 and args.batch_size_224 else args.batch_size
    config = make_config(name, size, batch_size, args.dtype, args.steps_per_call, args.dataset)
    spec = catalogue.info(config.dataset)
    if args.dataset:
        features, labels = catalogue.load_arrays(args.dataset, "train", data_dir=args.data_dir)
    else:
        features, labels = random_split(spec, max(args.num_examples, 2 * batch_size))
    runners = {"jax": jax_runner(config, features, labels)}
    if args.xla_reference and jax.default_backend() == "cpu":
        # The same step with XLA's kernels instead of the CPU ones (models/kernels).
        runners["xla"] = jax_runner(with_kernels(config, "xla"), features, labels)
    if not args.no_torch:
        runners["torch"] = torch_runner(name, size, batch_size, args.dtype, features, labels,
                                        spec.num_classes)
        if runners["torch"].params != runners["jax"].params:
            raise AssertionError(f"{name}@{size}: the torch reference has "
                                 f"{runners['torch'].params:,} parameters, the Flax model "
                                 f"{runners['jax'].params:,}")
    phases = ("train", "eval") if args.eval else ("train",)
    chunk = training_steps.resolve_steps_per_call(config)
    steps = max(args.steps, chunk)
    steps -= steps % chunk  # whole chunks only
    for runner in runners.values():
        runner.train(max(args.warmup, 1) * chunk)
        if args.eval:
            runner.evaluate(max(args.warmup, 1))
    times = {(fw, phase): [] for fw in runners for phase in phases}
    for _ in range(args.repeats):
        for phase in phases:
            for fw, runner in runners.items():
                fn = runner.train if phase == "train" else runner.evaluate
                times[fw, phase].append(timed(fn, steps))

    kind = jax.devices()[0].device_kind
    peak = peak_flops(kind, args.dtype)
    row = {"model": name, "input_size": size, "batch_size": batch_size, "dtype": args.dtype,
           "kernels": models.kernels.resolve(config.model.kernels).name,
           "steps_per_call": chunk, "steps": steps, "repeats": args.repeats,
           "params": runners["jax"].params, "compile_s": runners["jax"].compile_s}
    for phase in phases:
        for fw in runners:
            median = statistics.median(times[fw, phase])
            row[f"{fw}_{phase}_examples_per_s"] = steps * batch_size / median
            row[f"{fw}_{phase}_times_s"] = times[fw, phase]
        flops = runners["jax"].train_flops if phase == "train" else runners["jax"].eval_flops
        if flops:
            achieved = flops * steps / statistics.median(times["jax", phase])
            row[f"jax_{phase}_flops_per_step"] = flops
            row[f"jax_{phase}_achieved_flops"] = achieved
            row[f"jax_{phase}_peak_fraction"] = achieved / peak if peak else None
        if "xla" in runners:
            row[f"{phase}_cpu_paths_gain"] = (row[f"jax_{phase}_examples_per_s"] /
                                              row[f"xla_{phase}_examples_per_s"])
        if "torch" in runners:
            row[f"{phase}_ratio"] = (row[f"jax_{phase}_examples_per_s"] /
                                     row[f"torch_{phase}_examples_per_s"])
    return row


def matmul_gflops(size: int = 2048, repeats: int = 3) -> float:
    """The device's rate on one large float32 matrix product (GFLOP/s, best of ``repeats``):
    the same run's ceiling for the table's FLOP/s, and a gauge of how loaded a shared machine
    was (on the development CPU: ~350 quiet, ~150 busy)."""
    a = jnp.ones((size, size), jnp.float32)
    product = jax.jit(lambda a: a @ a)
    product(a).block_until_ready()
    best = min(timed(lambda _: product(a).block_until_ready(), 1) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def environment() -> dict:
    import platform

    info = {"jax": jax.__version__, "backend": jax.default_backend(),
            "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
            "cpu_count": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "machine": platform.processor() or platform.machine(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "jax_matmul_gflops": round(matmul_gflops(), 1)}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["torch_device"] = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        pass
    return info


def format_table(rows: list[dict], phases=("train", "eval")) -> str:
    def si(value):
        if value is None:
            return "n/a"
        for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6)):
            if value >= scale:
                return f"{value / scale:.1f}{unit}"
        return f"{value:.0f}"

    header = ["model", "size", "batch"]
    with_xla = any("train_cpu_paths_gain" in row for row in rows)
    for phase in phases:
        header += [f"{phase} jax ex/s", f"{phase} torch ex/s", f"{phase} jax/torch",
                   f"{phase} FLOP/s", f"{phase} %peak"]
        if with_xla:
            header += [f"{phase} XLA-only ex/s", f"{phase} gain"]
    lines = [header]
    for row in rows:
        line = [row["model"], str(row["input_size"]), str(row["batch_size"])]
        for phase in phases:
            if f"jax_{phase}_examples_per_s" not in row:
                line += ["-"] * (7 if with_xla else 5)
                continue
            torch_rate = row.get(f"torch_{phase}_examples_per_s")
            ratio = row.get(f"{phase}_ratio")
            fraction = row.get(f"jax_{phase}_peak_fraction")
            line += [f"{row[f'jax_{phase}_examples_per_s']:.0f}",
                     f"{torch_rate:.0f}" if torch_rate else "-",
                     f"{ratio:.2f}x" if ratio else "-",
                     si(row.get(f"jax_{phase}_achieved_flops")),
                     f"{100 * fraction:.1f}%" if fraction else "n/a"]
            if with_xla:
                gain = row.get(f"{phase}_cpu_paths_gain")
                xla_rate = row.get(f"xla_{phase}_examples_per_s")
                line += [f"{xla_rate:.0f}" if xla_rate else "-", f"{gain:.2f}x" if gain else "-"]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(models.MODEL_NAMES),
                        help="comma-separated model names")
    parser.add_argument("--sizes", default="28,224",
                        help="comma-separated input sizes; sizes a model lacks are skipped "
                             "(conv1d always runs at 721)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batch-size-224", type=int, default=None,
                        help="batch size at 224 (default: --batch-size); e.g. 32 on CPU")
    parser.add_argument("--dtype", choices=tuple(training_steps.DTYPES), default="float32")
    parser.add_argument("--steps", type=int, default=10, help="steps per timed repeat")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up calls before timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps-per-call", type=int, default=0,
                        help="the config's steps_per_call (0: the project's default)")
    parser.add_argument("--num-examples", type=int, default=4096,
                        help="size of the resident random training split")
    parser.add_argument("--dataset", default=None,
                        help="train on this TFDS dataset (catalogue.load_arrays) instead")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-eval", dest="eval", action="store_false")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--xla-reference", action="store_true",
                        help="CPU: also time the step with XLA's kernels instead of the CPU "
                             "kernels (models/kernels), interleaved")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    env = environment()
    print(json.dumps(env))
    rows = []
    for name in args.models.split(","):
        for size in models.input_sizes(name):
            if size in sizes or models.is_line_model(name):
                row = measure(name, size, args)
                rows.append(row)
                print(format_table([row], ("train", "eval") if args.eval else ("train",)),
                      flush=True)
    print()
    print(format_table(rows, ("train", "eval") if args.eval else ("train",)))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".tmp")
        end = {"load_average_end": os.getloadavg(),
               "jax_matmul_gflops_end": round(matmul_gflops(), 1)}
        tmp.write_text(json.dumps({"environment": {**env, **end},
                                   "args": vars(args), "rows": rows}, indent=1))
        tmp.replace(out)
    return rows


if __name__ == "__main__":
    main()
