"""One prepared accelerator check: every model against PyTorch, a full v2 epoch, time to a target
accuracy and a profile summary, written to ``--out`` as JSON and Markdown as it goes.

    python benchmarks/device_check.py --out /tmp/device_check            # one GPU, < 8 min
    python benchmarks/device_check.py --out /tmp/device_check --smoke    # CPU rehearsal

Sections, in order, each with its share of ``--budget-s`` (an item that would start past its
section's deadline is recorded as skipped, so a slow compile costs rows, not the run):

1. ``ceilings``: a bf16 matrix product (JAX and torch) and a device-to-device copy, timed here:
   the run's own FLOP/s and bandwidth ceilings.
2. ``models``: the nine models (the five torchvision ones at 224 and 28, the rest at 28 or 721)
   in bfloat16 and float32: training and evaluation examples/s of the project's compiled chunk
   (``benchmarks/throughput.jax_runner``) and of PyTorch eager on the same device with the same
   batch, preprocessing and Adam (``torch_runner``), torch.compile where the budget allows,
   the ratios, XLA's FLOPs per step and the achieved fraction of the timed matmul.
3. ``epoch``: one v2-sized epoch (42,454 device-resident examples) of SimpleCNN2@28 and
   ResNet18@224 in bfloat16, wall time from the first step's dispatch to the last step's end.
4. ``accuracy``: ``train_and_evaluate`` on simulated v2 spectra (``data.simulator`` +
   ``data.recipe``, 42,454 / 7,546, made in worker processes while section 2 runs) until the
   test accuracy reaches ``--target-accuracy``; seconds from the first compiled chunk's end to
   that evaluation.
5. ``profile`` (``--profile``): a ``jax.profiler`` trace of ResNet18@224 training steps,
   summarised as device time in matrix/convolution kernels (compute), in other kernels
   (fusions, copies, reductions: memory-bound), and gaps where the device idled (host).

Needs neither TensorFlow, TFDS, clu nor astropy. ``results.json`` is rewritten after every
item, so a run killed by a timeout still leaves what it measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

V2_TRAIN, V2_TEST = 42_454, 7_546
SIMULATION_CHUNK = 2048
TORCHVISION = ("alexnet", "vgg16", "googlenet", "resnet18", "mobilenetv2")
# Share of the budget per section; the models section is the largest.
SECTION_SHARES = {"ceilings": 0.06, "models": 0.48, "epoch": 0.12, "ensembles": 0.06,
                  "accuracy": 0.18, "profile": 0.10}


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything ``--smoke`` shrinks."""

    matmul: int
    copy_mib: int
    batch_28: int
    batch_224: int
    resident_examples: int
    repeat_s: float  # target seconds per timed repeat (steps adapt to it)
    repeats: int
    epoch_examples: int
    sim_train: int
    sim_test: int
    max_epochs: int
    profile_steps: int
    models_224: tuple[str, ...]
    bf16_models: tuple[str, ...] | None  # None: all
    fp32_models: tuple[str, ...] | None
    dtype: str  # of the epoch, accuracy and profile sections
    accuracy_models: tuple[tuple[str, int], ...]
    torch_compile: bool  # inductor on a CPU compiles C++ for minutes: off in the smoke run
    ensemble_sizes: tuple[int, ...] = (1, 8, 32)  # members trained in one program
    ensemble_models: tuple[tuple[str, int], ...] = (("simplecnn2", 28), ("resnet18", 28))
    ensemble_dtype: str = "bfloat16"


FULL = Sizes(matmul=8192, copy_mib=2048, batch_28=256, batch_224=256, resident_examples=8192,
             repeat_s=0.4, repeats=3, epoch_examples=V2_TRAIN, sim_train=V2_TRAIN,
             sim_test=V2_TEST, max_epochs=4, profile_steps=10, models_224=TORCHVISION,
             bf16_models=None, fp32_models=None, dtype="bfloat16", accuracy_models=(("simplecnn2", 28), ("resnet18", 224)),
             torch_compile=True)
# bfloat16 convolutions on a CPU are emulated and slow in both frameworks: float32 there, and
# 224 only in the epoch and profile sections
SMOKE = Sizes(matmul=512, copy_mib=16, batch_28=16, batch_224=2, resident_examples=64,
              repeat_s=0.0, repeats=1, epoch_examples=64, sim_train=600, sim_test=150,
              max_epochs=2, profile_steps=2, models_224=(),
              bf16_models=("simplecnn2",), fp32_models=None, dtype="float32", accuracy_models=(("simplecnn2", 28),),
              torch_compile=False, ensemble_sizes=(1, 2), ensemble_models=(("simplecnn2", 28),),
              ensemble_dtype="float32")


# ----------------------------------------------------------------------------- output

class Report:
    """results.json and results.md under ``out``, rewritten atomically after every item."""

    def __init__(self, out: Path, meta: dict):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.data = {"meta": meta, "ceilings": {}, "models": [], "epoch": [], "ensembles": [],
                     "accuracy": [],
                     "profile": {}, "skipped": [], "errors": [], "sections_s": {}}

    def add(self, section: str, item) -> None:
        if isinstance(self.data[section], list):
            self.data[section].append(item)
        else:
            self.data[section].update(item)
        self.flush()

    def flush(self) -> None:
        self.data["meta"]["elapsed_s"] = round(time.time() - self.data["meta"]["started"], 1)
        for name, text in (("results.json", json.dumps(self.data, indent=1, default=str)),
                           ("results.md", markdown(self.data))):
            tmp = self.out / f".{name}.tmp"
            tmp.write_text(text + "\n")
            tmp.replace(self.out / name)


def _fmt(value, digits=0, suffix=""):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(data: dict) -> str:
    meta, ceilings = data["meta"], data["ceilings"]
    parts = [f"# Device check{' (smoke)' if meta.get('smoke') else ''}",
             f"{meta.get('device_kind')} x{meta.get('device_count')}, JAX {meta.get('jax')}, "
             f"torch {meta.get('torch', '-')}, {meta.get('date')}; {meta['elapsed_s']} s.",
             f"Ceilings timed in this run: bf16 matmul {_fmt(ceilings.get('jax_bf16_tflops'), 1)}"
             f" TFLOP/s (JAX), {_fmt(ceilings.get('torch_bf16_tflops'), 1)} (torch); device "
             f"copy {_fmt(ceilings.get('copy_gb_s'), 0)} GB/s."]
    rows = []
    for r in data["models"]:
        rows.append([r["model"], str(r["input_size"]), r["dtype"], str(r["batch_size"]),
                     _fmt(r.get("jax_train")), _fmt(r.get("torch_train")),
                     _fmt(r.get("train_ratio"), 2, "x"), _fmt(r.get("torch_compile_train")),
                     _fmt(r.get("train_ratio_compiled"), 2, "x"),
                     _fmt(r.get("jax_eval")), _fmt(r.get("torch_eval")),
                     _fmt(r.get("eval_ratio"), 2, "x"),
                     _fmt(r.get("train_tflops"), 1), _fmt(r.get("train_matmul_fraction"), 2)])
    if rows:
        parts.append(_table(["model", "size", "dtype", "batch", "train JAX ex/s",
                             "train torch ex/s", "JAX/torch", "torch.compile ex/s",
                             "JAX/compiled", "eval JAX ex/s", "eval torch ex/s",
                             "JAX/torch", "train TFLOP/s", "of matmul"], rows))
    if data["epoch"]:
        parts.append(_table(["one v2 epoch", "dtype", "batch", "examples", "wall s", "ex/s",
                             "compile s"],
                            [[f"{r['model']}@{r['input_size']}", r["dtype"], str(r["batch_size"]),
                              str(r["examples"]), _fmt(r["wall_s"], 2), _fmt(r["examples_per_s"]),
                              _fmt(r["compile_s"], 1)] for r in data["epoch"]]))
    if data.get("ensembles"):
        parts.append(_table(["ensemble (one epoch)", "dtype", "members", "member axis", "batch",
                             "wall s", "member-examples/s", "compile s"],
                            [[f"{r['model']}@{r['input_size']}", r["dtype"], str(r["members"]),
                              r["member_axis"], str(r["batch_size"]), _fmt(r["wall_s"], 2),
                              _fmt(r["member_examples_per_s"]), _fmt(r["compile_s"], 1)]
                             for r in data["ensembles"]]))
    if data["accuracy"]:
        parts.append(_table(["time to accuracy", "dtype", "target", "reached", "epochs",
                             "seconds", "final accuracy", "wall s (compile incl.)"],
                            [[f"{r['model']}@{r['input_size']}", r["dtype"],
                              _fmt(r["target"], 3), str(r["reached"]), _fmt(r["epochs"], 2),
                              _fmt(r["seconds_to_target"], 2), _fmt(r["final_accuracy"], 4),
                              _fmt(r["wall_s"], 1)] for r in data["accuracy"]]))
    profile = data["profile"]
    if profile.get("split"):
        split = profile["split"]
        parts.append(f"Profile {profile['model']}: step {_fmt(profile['step_ms'], 2)} ms; "
                     f"compute {_fmt(100 * split['compute'], 0)}%, memory-bound "
                     f"{_fmt(100 * split['memory'], 0)}%, host gaps "
                     f"{_fmt(100 * split['host_gap'], 0)}% ({profile['source']}).")
    if data["skipped"]:
        parts.append("Skipped (budget): " + "; ".join(data["skipped"]))
    if data["errors"]:
        parts.append("Errors: " + "; ".join(e["item"] + ": " + e["error"] for e in data["errors"]))
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------- simulated data

def _simulate_chunk(job: tuple[str, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, 28, 28, 1) and labels of ``n`` simulated spectra (a worker's job)."""
    from astrospectra_jax.data import recipe, simulator

    task, n, seed = job
    spectra = simulator.simulate(task, n, seed)
    return recipe.image(spectra.flux)[..., None], spectra.labels


def start_simulation(sizes: Sizes, workers: int):
    """Simulated v2 train and test splits, computed by forked workers in the background.

    Called before JAX or torch is imported, so forking is safe; returns a function that waits
    for the splits and returns ``input_pipeline.Splits``.
    """
    jobs = []
    for split, n, offset in (("train", sizes.sim_train, 0), ("test", sizes.sim_test, 10**6)):
        for i, start in enumerate(range(0, n, SIMULATION_CHUNK)):
            jobs.append((split, ("v2", min(SIMULATION_CHUNK, n - start), offset + i)))
    pool = multiprocessing.get_context("fork").Pool(max(1, min(workers, len(jobs))))
    pending = pool.map_async(_simulate_chunk, [job for _, job in jobs])

    def result():
        """(splits, seconds waited for them: 0 when the workers finished in the background)."""
        from astrospectra_jax.training import input_pipeline

        began = time.time()
        chunks = pending.get()
        pool.close()
        parts = {split: [c for (s, _), c in zip(jobs, chunks) if s == split]
                 for split in ("train", "test")}
        arrays = [np.concatenate([c[k] for c in parts[split]])
                  for split in ("train", "test") for k in (0, 1)]
        return input_pipeline.Splits(*arrays), time.time() - began

    return result


# ----------------------------------------------------------------------------- timing

class Budget:
    def __init__(self, total_s: float):
        self.start, self.total = time.time(), total_s
        self.section_deadline = self.start + total_s

    def open(self, section: str, after: float) -> None:
        """The section's deadline: its share, plus whatever earlier sections left unused, never
        past the end of the whole budget."""
        now = time.time()
        self.section_deadline = min(self.start + self.total,
                                    now + SECTION_SHARES[section] * self.total + after)

    def left(self) -> float:
        return self.section_deadline - time.time()


def _median_rate(fn, steps: int, batch: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn(steps)
        times.append(time.perf_counter() - began)
    return steps * batch / statistics.median(times)


def _steps_for(fn, chunk: int, target_s: float) -> int:
    """Whole chunks giving about ``target_s`` per timed repeat (one chunk at least)."""
    began = time.perf_counter()
    fn(chunk)
    per_chunk = time.perf_counter() - began
    return chunk * max(1, round(target_s / max(per_chunk, 1e-6)))


def matmul_tflops(n: int, repeats: int = 10) -> dict:
    """bf16 n x n x n products on random data, JAX and torch: TFLOP/s, mean of ``repeats``."""
    import jax
    import jax.numpy as jnp

    result = {"matmul_n": n}
    a, b = (jax.random.normal(jax.random.key(i), (n, n), jnp.bfloat16) for i in (1, 2))
    product = jax.jit(lambda a, b: a @ b)
    for _ in range(3):
        product(a, b).block_until_ready()
    began = time.perf_counter()
    for _ in range(repeats):
        out = product(a, b)
    out.block_until_ready()
    result["jax_bf16_tflops"] = 2 * n**3 * repeats / (time.perf_counter() - began) / 1e12
    del a, b, out
    torch = _torch()
    if torch is not None:
        device = _torch_device(torch)
        a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
        for _ in range(3):
            a @ b
        _sync(torch)
        began = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(torch)
        result["torch_bf16_tflops"] = 2 * n**3 * repeats / (time.perf_counter() - began) / 1e12
    return result


def copy_bandwidth(mib: int, repeats: int = 10) -> float:
    """Device-to-device copy through JAX, GB/s counting bytes read and written."""
    import jax
    import jax.numpy as jnp

    x = jnp.ones((mib * 2**20 // 4,), jnp.float32)
    copy = jax.jit(lambda x: x + 1.0)  # one read, one write per element
    copy(x).block_until_ready()
    began = time.perf_counter()
    for _ in range(repeats):
        y = copy(x)
    y.block_until_ready()
    return 2 * x.nbytes * repeats / (time.perf_counter() - began) / 1e9


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _torch_device(torch) -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _sync(torch) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _release(torch) -> None:
    import gc

    gc.collect()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- sections

def model_items(sizes: Sizes) -> list[tuple[str, int, str]]:
    """(model, size, dtype) in priority order: the targets' rows first, bfloat16 before
    float32, 224 before 28."""
    from astrospectra_jax import models

    combos = []
    for name in models.MODEL_NAMES:
        for size in models.input_sizes(name):
            if size == models.TORCHVISION_SIZE and name not in sizes.models_224:
                continue
            combos.append((name, size))
    first = [("resnet18", 224), ("simplecnn2", 28)]
    combos = [c for c in first if c in combos] + sorted(
        (c for c in combos if c not in first), key=lambda c: -c[1])
    items = [(n, s, "bfloat16") for n, s in combos
             if sizes.bf16_models is None or n in sizes.bf16_models]
    items += [(n, s, "float32") for n, s in combos
              if sizes.fp32_models is None or n in sizes.fp32_models]
    return items


def measure_model(name: str, size: int, dtype: str, sizes: Sizes, ceilings: dict) -> dict:
    from astrospectra_jax.data import catalogue
    from astrospectra_jax.training import steps as training_steps
    from benchmarks import throughput

    torch = _torch()
    batch = sizes.batch_224 if size == 224 else sizes.batch_28
    config = throughput.make_config(name, size, batch, dtype)
    spec = catalogue.info(config.dataset)
    features, labels = throughput.random_split(spec, max(sizes.resident_examples, 2 * batch))
    began = time.time()
    jax_side = throughput.jax_runner(config, features, labels)
    chunk = training_steps.resolve_steps_per_call(config)
    steps = _steps_for(jax_side.train, chunk, sizes.repeat_s)  # also the warm-up
    jax_side.evaluate(1)
    eval_steps = steps  # as many batches as training steps: evaluation is cheaper
    row = {"model": name, "input_size": size, "dtype": dtype, "batch_size": batch,
           "steps": steps, "params": jax_side.params, "jax_compile_s": jax_side.compile_s,
           "train_flops_per_step": jax_side.train_flops,
           "eval_flops_per_step": jax_side.eval_flops}
    runners = {"jax": jax_side}
    if torch is not None:
        runners["torch"] = throughput.torch_runner(name, size, batch, dtype, features, labels,
                                                   spec.num_classes)
        runners["torch"].train(2)
        runners["torch"].evaluate(1)
    # interleaved repeats: a drift in clocks or load touches both frameworks alike
    rates = {key: [] for key in ("jax_train", "torch_train", "jax_eval", "torch_eval")}
    for _ in range(sizes.repeats):
        for fw, runner in runners.items():
            rates[f"{fw}_train"].append(_median_rate(runner.train, steps, batch, 1))
            rates[f"{fw}_eval"].append(_median_rate(runner.evaluate, eval_steps, batch, 1))
    for key, values in rates.items():
        if values:
            row[key] = statistics.median(values)
    for phase in ("train", "eval"):
        if row.get(f"torch_{phase}"):
            row[f"{phase}_ratio"] = row[f"jax_{phase}"] / row[f"torch_{phase}"]
        flops = row[f"{phase}_flops_per_step"]
        if flops:
            row[f"{phase}_tflops"] = flops * row[f"jax_{phase}"] / batch / 1e12
            if ceilings.get("jax_bf16_tflops"):
                row[f"{phase}_matmul_fraction"] = (row[f"{phase}_tflops"] /
                                                   ceilings["jax_bf16_tflops"])
    del runners
    row["seconds"] = time.time() - began
    _release(torch)
    return row


def torch_compile_rates(row: dict, sizes: Sizes) -> dict:
    """torch.compile (default mode) of the PyTorch twin of a measured row, same loop as eager."""
    import torch

    from astrospectra_jax.data import catalogue
    from benchmarks import throughput, torch_models

    name, size, batch, dtype = row["model"], row["input_size"], row["batch_size"], row["dtype"]
    steps, repeats = row["steps"], sizes.repeats
    spec = catalogue.info(throughput.make_config(name, size, batch, dtype).dataset)
    num_classes = spec.num_classes
    features, labels = throughput.random_split(spec, max(sizes.resident_examples, 2 * batch))

    create = torch_models.create
    torch_models.create = lambda *a, **k: torch.compile(create(*a, **k))
    try:
        runner = throughput.torch_runner(name, size, batch, dtype, features, labels,
                                         num_classes)
        began = time.time()
        runner.train(3)  # compiles
        runner.evaluate(2)
        compile_s = time.time() - began
        rate = _median_rate(runner.train, steps, batch, repeats)
        return {"torch_compile_train": rate, "torch_compile_s": compile_s,
                "train_ratio_compiled": row["jax_train"] / rate}
    finally:
        torch_models.create = create
        _release(torch)


def _epoch_state(name: str, size: int, batch: int, dtype: str, features, labels,
                 members: int = 1):
    """The project's compiled chunk over a resident split, and a function running one epoch
    the way ``loop.train`` does (chunks ending at multiples of steps_per_call, the
    last one's extra steps no-ops); returns (run_epoch, compile_s). ``members``: an ensemble
    of that many models (config.ensemble_size)."""
    import jax

    from astrospectra_jax.data import catalogue
    from astrospectra_jax.training import ensemble, inputs, sharding, steps as training_steps
    from astrospectra_jax.training import state as training_state
    from benchmarks import throughput

    config = throughput.make_config(name, size, batch, dtype)
    config.ensemble_size = members
    spec = catalogue.info(config.dataset)
    mesh = ensemble.make_mesh(config)
    chunk = training_steps.resolve_steps_per_call(config)
    steps_per_epoch = len(labels) // batch
    tx, _ = training_steps.make_optimizer(config, steps_per_epoch)
    graphdef, state = training_state.init_state(config, spec, tx, mesh)
    compiled = training_steps.make_steps(config, spec, graphdef, tx, mesh, steps_per_epoch,
                                         len(labels), chunk)
    data = (sharding.put_replicated(features, mesh), sharding.put_replicated(labels, mesh))
    permutations = inputs.EpochPermutations(compiled.epoch_permutations, steps_per_epoch)
    began = time.perf_counter()
    train_chunk = compiled.device_chunk.lower(state, *data, permutations(0),
                                                 np.int32(0)).compile()
    compile_s = time.perf_counter() - began
    holder = {"state": train_chunk(state, *data, permutations(0), np.int32(0))[0]}  # warm-up,
    jax.block_until_ready(holder["state"])  # every step a no-op: the state stays at step 0

    def run_epoch() -> float:
        state, step, began = holder["state"], 0, time.perf_counter()
        while step < steps_per_epoch:
            end = min(steps_per_epoch, (step // chunk + 1) * chunk)
            state, out = train_chunk(state, *data, permutations(step), np.int32(end))
            step = end
        jax.block_until_ready((state, out))
        return time.perf_counter() - began

    return run_epoch, compile_s, steps_per_epoch


def epoch_row(name: str, size: int, dtype: str, sizes: Sizes) -> dict:
    from astrospectra_jax.data import catalogue
    from benchmarks import throughput

    batch = sizes.batch_224 if size == 224 else sizes.batch_28
    spec = catalogue.info(throughput.IMAGE_DATASET)
    features, labels = throughput.random_split(spec, sizes.epoch_examples)
    run_epoch, compile_s, steps = _epoch_state(name, size, batch, dtype, features, labels)
    wall = run_epoch()
    return {"model": name, "input_size": size, "dtype": dtype, "batch_size": batch,
            "examples": len(labels), "steps": steps, "wall_s": wall,
            "examples_per_s": steps * batch / wall, "compile_s": compile_s}


def ensemble_row(name: str, size: int, members: int, sizes: Sizes) -> dict:
    """One epoch of ``members`` models trained together: member-examples/s."""
    from astrospectra_jax.data import catalogue
    from astrospectra_jax.training import ensemble
    from benchmarks import throughput

    batch = sizes.batch_224 if size == 224 else sizes.batch_28
    spec = catalogue.info(throughput.IMAGE_DATASET)
    features, labels = throughput.random_split(spec, sizes.epoch_examples)
    run_epoch, compile_s, steps = _epoch_state(name, size, batch, sizes.ensemble_dtype,
                                               features, labels, members)
    wall = run_epoch()
    config = throughput.make_config(name, size, batch, sizes.ensemble_dtype)
    config.ensemble_size = members
    return {"model": name, "input_size": size, "dtype": sizes.ensemble_dtype,
            "members": members, "member_axis": ensemble.resolve_axis(config),
            "batch_size": batch, "steps": steps, "wall_s": wall, "compile_s": compile_s,
            "member_examples_per_s": members * steps * batch / wall}


def accuracy_row(name: str, size: int, dtype: str, splits, target: float, sizes: Sizes,
                 seconds_left: float, epoch: dict | None) -> dict:
    """``train_and_evaluate`` on the simulated splits, evaluating every epoch; seconds from the
    first logged chunk to the first evaluation at or above ``target``. As many epochs (up to
    ``max_epochs``) as fit ``seconds_left`` at the rate the epoch section measured."""
    from astrospectra_jax.training import train
    from benchmarks import throughput

    batch = sizes.batch_224 if size == 224 else sizes.batch_28
    config = throughput.make_config(name, size, batch, dtype)
    steps_per_epoch = len(splits.train_labels) // batch
    epochs = sizes.max_epochs
    if epoch:  # per epoch: training, plus evaluation at a third of the cost per example
        per_epoch = (len(splits.train_labels) + len(splits.test_labels) / 3) / epoch[
            "examples_per_s"]
        epochs = int(max(1, min(epochs, (seconds_left - epoch["compile_s"]) // per_epoch)))
    config.num_epochs = epochs
    config.eval_every_epochs = 1
    config.log_every_steps = max(1, config.steps_per_call or 20)
    config.checkpoint_every_steps = 10**9  # one checkpoint, at the end
    with tempfile.TemporaryDirectory(prefix="device_check_") as workdir:
        began = time.time()
        results = train.train_and_evaluate(config, workdir, splits=splits)
        wall = time.time() - began
        records = [json.loads(line) for line in
                   (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    first = next(r for r in records if r["split"] == "train")
    tests = [r for r in records if r["split"] == "test"]
    hit = next((r for r in tests if r["accuracy"] >= target), None)
    return {"model": name, "input_size": size, "dtype": dtype, "batch_size": batch,
            "target": target, "reached": hit is not None,
            "epochs": hit["epoch"] if hit else results["epochs"],
            "seconds_to_target": hit["time"] - first["time"] if hit else None,
            "test_accuracy_by_epoch": [(r["epoch"], r["accuracy"]) for r in tests],
            "final_accuracy": results["accuracy"], "wall_s": wall,
            "compile_s": results["compile_time_s"], "steps_per_epoch": steps_per_epoch,
            "train_examples_per_s": results["train_examples_per_s"]}


def profile_summary(name: str, size: int, dtype: str, sizes: Sizes) -> dict:
    """A ``jax.profiler`` trace of a few training steps (Perfetto JSON), split into compute,
    memory-bound kernels and host gaps; the trace itself stays in a temporary folder."""
    import jax

    from astrospectra_jax.data import catalogue
    from astrospectra_jax.training import steps as training_steps
    from benchmarks import throughput

    batch = sizes.batch_224 if size == 224 else sizes.batch_28
    spec = catalogue.info(throughput.IMAGE_DATASET)
    features, labels = throughput.random_split(spec, max(sizes.resident_examples, 2 * batch))
    config = throughput.make_config(name, size, batch, dtype)
    runner = throughput.jax_runner(config, features, labels)
    chunk = training_steps.resolve_steps_per_call(config)
    runner.train(chunk)
    steps = max(chunk, sizes.profile_steps - sizes.profile_steps % chunk)
    with tempfile.TemporaryDirectory(prefix="device_check_trace_") as trace_dir:
        began = time.perf_counter()
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            runner.train(steps)
        wall = time.perf_counter() - began
        traces = sorted(Path(trace_dir).rglob("*.trace.json.gz"))
        if not traces:
            return {"model": f"{name}@{size}", "error": "no Perfetto trace written"}
        with gzip.open(traces[-1], "rt") as f:
            trace = json.load(f)
    summary = summarise_trace(trace, wall)
    summary.update(model=f"{name}@{size} {dtype} batch {batch}", steps=steps,
                   step_ms=1e3 * wall / steps)
    return summary


COMPUTE_KERNELS = ("gemm", "conv", "cudnn", "xmma", "cutlass", "nvjet", "dot", "matmul",
                   "wgmma", "sm90", "sm80", "triton_gemm", "implicit")


def summarise_trace(trace, wall_s: float) -> dict:
    """Device time by kind of kernel over the traced span: compute (matrix/convolution),
    memory (every other kernel) and host gaps (the span minus the union of kernel times).

    Device events are those of processes named ``/device:...``; a CPU-only trace has none, and
    then XLA's CPU thread-pool events stand in (source ``cpu threads``)."""
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {e["pid"]: e.get("args", {}).get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    devices = {pid for pid, n in names.items() if n.startswith("/device:")}
    if devices:
        source = "device kernels"
        kernels = [e for e in events if e.get("ph") == "X" and e.get("pid") in devices]
    else:
        threads = {(e["pid"], e["tid"]) for e in events if e.get("ph") == "M"
                   and e.get("name") == "thread_name" and "XLA" in e.get("args", {}).get("name", "")}
        source = "cpu threads"
        kernels = [e for e in events if e.get("ph") == "X" and (e.get("pid"), e.get("tid"))
                   in threads and not e["name"].startswith(("ThreadpoolListener", "end:",
                                                            "ThunkExecutor"))]
    by_kind, by_name = {"compute": 0.0, "memory": 0.0}, {}
    intervals = []
    for e in kernels:
        duration = float(e.get("dur", 0.0)) * 1e-6
        label = (e["name"] + " " + str(e.get("args", {}).get("hlo_op", ""))).lower()
        kind = "compute" if any(k in label for k in COMPUTE_KERNELS) else "memory"
        by_kind[kind] += duration
        by_name[e["name"]] = by_name.get(e["name"], 0.0) + duration
        intervals.append((float(e["ts"]) * 1e-6, float(e["ts"]) * 1e-6 + duration))
    busy, end = 0.0, -math.inf
    for lo, hi in sorted(intervals):  # union of the kernels' intervals
        if hi > end:
            busy += hi - max(lo, end)
            end = hi
    total = max(by_kind["compute"] + by_kind["memory"], 1e-12)
    active = min(busy, wall_s)
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:10]
    return {"source": source, "wall_s": wall_s, "kernel_s": by_kind, "busy_s": busy,
            "split": {"compute": by_kind["compute"] / total * active / wall_s,
                      "memory": by_kind["memory"] / total * active / wall_s,
                      "host_gap": 1.0 - active / wall_s},
            "top_kernels_s": top}


# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for results.json and results.md")
    parser.add_argument("--smoke", action="store_true",
                        help="shrink every size: the whole check on a CPU in a few minutes")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="seconds for all sections (default 420, smoke 360)")
    parser.add_argument("--target-accuracy", type=float, default=None,
                        help="test accuracy for the time-to-accuracy section (default 0.85; "
                             "smoke 0.5)")
    parser.add_argument("--profile", action="store_true",
                        help="trace ResNet18@224 training and summarise where the step goes")
    parser.add_argument("--sections", default="ceilings,models,epoch,ensembles,accuracy,profile",
                        help="comma-separated subset of the sections, in their fixed order")
    parser.add_argument("--models", default=None,
                        help="comma-separated model names for the models section (default all)")
    parser.add_argument("--no-torch-compile", action="store_true")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2),
                        help="processes simulating the accuracy section's spectra")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    budget_s = args.budget_s or (360.0 if args.smoke else 420.0)
    target = args.target_accuracy or (0.5 if args.smoke else 0.85)
    sections = [s for s in SECTION_SHARES if s in args.sections.split(",")]
    unknown = set(args.sections.split(",")) - set(SECTION_SHARES)
    if unknown:
        raise SystemExit(f"--sections: unknown {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(SECTION_SHARES)}")
    started = time.time()
    # Before JAX and torch load: fork the simulation workers, and let JAX take GPU memory as
    # needed (its default preallocation of 75% would leave torch too little).
    simulated = start_simulation(sizes, args.workers) if "accuracy" in sections else None
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

    import jax

    # The profile section compiles what the models section compiled: a persistent cache, local
    # to this run's machine, saves that second compilation.
    jax.config.update("jax_compilation_cache_dir",
                      str(Path(tempfile.gettempdir()) / "device_check_xla_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    torch = _torch()
    meta = {"started": started, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "smoke": args.smoke, "budget_s": budget_s, "jax": jax.__version__,
            "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
            "device_count": jax.device_count(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "sizes": dataclasses.asdict(sizes),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
    if torch is not None:
        meta.update(torch=torch.__version__, torch_device=_torch_device(torch))
    report = Report(Path(args.out), meta)
    budget = Budget(budget_s)
    print(f"device check: {meta['device_kind']} x{meta['device_count']}, budget {budget_s:.0f} s,"
          f" sections {', '.join(sections)}", flush=True)

    def attempt(section: str, label: str, fn):
        if budget.left() <= 0:
            report.data["skipped"].append(f"{section}: {label}")
            report.flush()
            print(f"  skipped (budget): {label}", flush=True)
            return None
        began = time.time()
        try:
            result = fn()
        except Exception as error:  # one failing item must not cost the rest of the run
            report.data["errors"].append({"item": f"{section}: {label}",
                                          "error": f"{type(error).__name__}: {error}",
                                          "traceback": traceback.format_exc()[-3000:]})
            report.flush()
            print(f"  error: {label}: {type(error).__name__}: {error}", flush=True)
            _release(torch)
            return None
        print(f"  {label}: {time.time() - began:.1f} s", flush=True)
        return result

    unused = 0.0
    for section in sections:
        budget.open(section, unused)
        section_began = time.time()
        print(f"[{section}] {budget.left():.0f} s", flush=True)
        if section == "ceilings":
            result = attempt(section, "matmul", lambda: matmul_tflops(sizes.matmul))
            if result:
                report.add("ceilings", result)
            bandwidth = attempt(section, "copy", lambda: copy_bandwidth(sizes.copy_mib))
            if bandwidth:
                report.add("ceilings", {"copy_gb_s": bandwidth})
        elif section == "models":
            wanted = set(args.models.split(",")) if args.models else None
            for name, size, dtype in model_items(sizes):
                if wanted and name not in wanted:
                    continue
                row = attempt(section, f"{name}@{size} {dtype}", lambda: measure_model(
                    name, size, dtype, sizes, report.data["ceilings"]))
                if row:
                    report.add("models", row)
            # torch.compile last: its compilation takes tens of seconds per model
            for row in report.data["models"]:
                key = (row["model"], row["input_size"], row["dtype"])
                if (torch is None or args.no_torch_compile or not sizes.torch_compile or
                        "torch_train" not in row or
                        key not in (("resnet18", 224, "bfloat16"), ("simplecnn2", 28, "bfloat16"))):
                    continue
                rates = attempt(section, f"torch.compile {key[0]}@{key[1]}",
                                lambda: torch_compile_rates(row, sizes))
                if rates:
                    row.update(rates)
                    report.flush()
        elif section == "epoch":
            for name, size in (("simplecnn2", 28), ("resnet18", 224)):
                row = attempt(section, f"epoch {name}@{size}",
                              lambda: epoch_row(name, size, sizes.dtype, sizes))
                if row:
                    report.add("epoch", row)
        elif section == "ensembles":
            for name, size in sizes.ensemble_models:
                for members in sizes.ensemble_sizes:
                    row = attempt(section, f"ensemble {name}@{size} x{members}",
                                  lambda: ensemble_row(name, size, members, sizes))
                    if row:
                        report.add("ensembles", row)
        elif section == "accuracy":
            splits, simulate_s = simulated()
            report.data["meta"]["simulation_wait_s"] = simulate_s
            for name, size in sizes.accuracy_models:
                measured = next((r for r in report.data["epoch"] if (r["model"], r["input_size"])
                                 == (name, size)), None)
                row = attempt(section, f"accuracy {name}@{size}", lambda: accuracy_row(
                    name, size, sizes.dtype, splits, target, sizes, budget.left(), measured))
                if row:
                    report.add("accuracy", row)
        elif section == "profile" and args.profile:
            summary = attempt(section, "profile resnet18@224", lambda: profile_summary(
                "resnet18", 224, sizes.dtype, sizes))
            if summary:
                report.add("profile", summary)
        spent = time.time() - section_began
        report.data["sections_s"][section] = round(spent, 1)
        unused = max(0.0, budget.section_deadline - time.time())
    report.flush()
    print(markdown(report.data), flush=True)
    return report.data


if __name__ == "__main__":
    main()
