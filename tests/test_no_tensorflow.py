"""Training runs where TensorFlow and TFDS are not installed (a bare accelerator image).

A subprocess makes ``tensorflow``, ``tensorflow_datasets``, ``clu`` and ``astropy``
unimportable (``sys.modules[name] = None``, what Python does for a package that is missing),
then trains a tiny model on in-memory arrays, checkpoints, resumes and imports the benchmarks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MISSING = ("tensorflow", "tensorflow_datasets", "clu", "astropy")

SCRIPT = textwrap.dedent("""
    import json, sys
    for name in {missing!r}:
        sys.modules[name] = None  # as if not installed: import raises ModuleNotFoundError

    import numpy as np
    import astrospectra_jax
    from astrospectra_jax.training import input_pipeline, train
    from configs.base import get_base_config
    import benchmarks.throughput, benchmarks.device_check  # the benchmarks import too

    rng = np.random.default_rng(0)
    def split(n):
        return (rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
                rng.integers(0, 3, n).astype(np.int32))
    splits = input_pipeline.Splits(*split(64), *split(20))
    config = get_base_config()
    config.dataset = "astrospectra_mnist/v2_synthetic"
    config.model.name = "simplecnn1"
    config.batch_size = 16
    config.num_epochs = 2
    config.max_steps = 3
    config.checkpoint_every_steps = 2
    config.eval_every_epochs = 0
    config.log_every_steps = 1
    first = train.train_and_evaluate(config, sys.argv[1], splits=splits)
    config.max_steps = 6
    resumed = train.train_and_evaluate(config, sys.argv[1], splits=splits)
    loaded = sorted(name for name in {missing!r} if sys.modules.get(name) is not None)
    print("RESULT " + json.dumps({{"first": first["steps"], "resumed_from": resumed["resumed_from_step"],
                                  "steps": resumed["steps"], "accuracy": resumed["accuracy"],
                                  "source": resumed["data_source"], "loaded": loaded}}))
""").format(missing=MISSING)


def test_trains_checkpoints_and_resumes_without_tensorflow(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "run")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result == {**result, "first": 3, "resumed_from": 3, "steps": 6,
                      "source": "in-memory arrays", "loaded": []}
    assert 0.0 <= result["accuracy"] <= 1.0
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["3", "4", "6"]  # keeps 3
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert list(run.glob("events.out.tfevents.*")), "tensorboard's writer wrote no events"
    assert json.loads((run / "results.json").read_text())["steps"] == 6
