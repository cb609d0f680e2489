"""Quickstart: a small, fast run on simulated spectra, end to end on a laptop CPU.

    python main.py --config=configs/quickstart.py --workdir=/tmp/qs

Builds astrospectra_mnist/v1_synthetic on first use (simulated STAR / GALAXY / QSO spectra,
8000 train / 1000 test; not LAMOST data, and labelled synthetic in every result file), trains
SimpleCNN1 at 28x28 for 3 epochs on 90% of the training split (10% held out to calibrate),
evaluates after each epoch, checkpoints, and writes results.json, metrics.jsonl, TensorBoard
events, confusion_matrix.png and reliability.png in the workdir.

Runtime and accuracy: see the README's quick start (chance 0.33; the same bit for bit on every
rerun on one machine, not necessarily across machines).
"""

from configs.base import get_base_config


def get_config():
    config = get_base_config()
    config.dataset = "astrospectra_mnist/v1_synthetic"
    config.model.name = "simplecnn1"
    config.model.input_size = 28
    config.optimizer.learning_rate = 1e-3
    config.schedule = "cosine"
    config.num_epochs = 3
    config.batch_size = 64
    config.checkpoint_every_steps = 200
    config.log_every_steps = 25
    return config
