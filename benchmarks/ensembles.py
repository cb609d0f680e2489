"""K seeds of a model for one epoch: one ensemble run vs separate runs (benchmarks/README.md).

    nice -n 5 python benchmarks/ensembles.py --out /tmp/ensembles.json \\
        [--models lenet,simplecnn1,simplecnn2] [--seeds 8] [--data-dir /tmp/tfds]

For each model (its configs/v1_<model>.py at 28, ``num_epochs=1`` on v1_synthetic, 8000 train
examples), three ways to train seeds 0..K-1, each timed as the wall time of its processes
(imports, data loading, compilation, training, evaluation, results all included):

- ``ensemble``: ``python -m astrospectra_jax.suite --seeds K`` (one ensemble run);
- ``separate``: ``python -m astrospectra_jax.suite --seeds K --separate`` (K main.py processes);
- ``in_process``: one Python process calling ``train_and_evaluate`` K times, one seed each.

Results go to ``--out`` (JSON) after every measurement, with the ratios separate / ensemble and
in_process / ensemble.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET = "astrospectra_mnist/v1_synthetic"

IN_PROCESS = """
import sys
sys.path.insert(0, {repo!r})
from configs import v1_{model} as module
from astrospectra_jax.training import train
for seed in range({seeds}):
    config = module.get_config()
    config.dataset, config.data_dir = {dataset!r}, {data_dir!r}
    config.num_epochs, config.seed = 1, seed
    train.train_and_evaluate(config, {runs!r} + f"/seed{{seed}}")
"""


def _timed(command: list[str], env: dict) -> float:
    began = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - began


def measure(model: str, seeds: int, data_dir: str, scratch: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    suite = [sys.executable, "-m", "astrospectra_jax.suite", "--dataset", DATASET, "--models",
             model, "--seeds", str(seeds), "--set", "num_epochs=1", "--data-dir", data_dir,
             "--no-progress"]
    row = {"model": model, "input_size": 28, "seeds": seeds}
    row["ensemble_s"] = _timed(suite + ["--runs", str(scratch / "ensemble")], env)
    result = next((scratch / "ensemble").rglob("results.json"))
    record = json.loads(result.read_text())
    row.update(member_axis=record.get("member_axis"), kernels=record.get("kernels"),
               ensemble_accuracy=record.get("accuracy"),
               member_accuracy_mean=record.get("accuracy_mean"))
    row["separate_s"] = _timed(suite + ["--separate", "--runs", str(scratch / "separate")], env)
    script = IN_PROCESS.format(repo=str(REPO), model=model, seeds=seeds, dataset=DATASET,
                               data_dir=data_dir, runs=str(scratch / "in_process"))
    row["in_process_s"] = _timed([sys.executable, "-c", script], env)
    row["separate_over_ensemble"] = row["separate_s"] / row["ensemble_s"]
    row["in_process_over_ensemble"] = row["in_process_s"] / row["ensemble_s"]
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--models", default="lenet,simplecnn1,simplecnn2")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--data-dir", default=os.environ.get("TFDS_DATA_DIR", "/tmp/tfds"))
    args = parser.parse_args(argv)
    from astrospectra_jax.data import catalogue  # build the dataset once, outside the timings

    catalogue.load_arrays(DATASET, "train", data_dir=args.data_dir)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
              "cpu_count": os.cpu_count(), "rows": []}
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as scratch:
            row = measure(model, args.seeds, args.data_dir, Path(scratch))
        report["rows"].append(row)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
