"""LeNet-5 on AstroSpectra-MNIST-v1 (STAR / GALAXY / QSO): native 28x28 images.

    python main.py --config=configs/v1_lenet.py --workdir=/tmp/v1_lenet

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=astrospectra_mnist/v1_synthetic.

Measured in the synthetic suite of 2026-12-01 (history: benchmarks/README.md): one epoch of this
configuration (`--config.num_epochs=1`) on v1_synthetic took 11 s on a 2-core CPU with the
classical grid sharing the cores (5626 training examples/s); test accuracy 0.827 on simulated
spectra. The configuration as written (28x28, 20 epochs) has not been timed.
"""

from configs.base import get_base_config


def get_config():
    config = get_base_config()
    config.dataset = "astrospectra_mnist/v1"
    config.model.name = "lenet"
    config.model.input_size = 28
    config.optimizer.learning_rate = 1e-3
    config.schedule = "cosine"
    config.num_epochs = 20
    return config
