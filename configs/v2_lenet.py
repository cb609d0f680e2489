"""LeNet-5 on AstroSpectra-MNIST-v2 (F / G / K stars): native 28x28 images.

    python main.py --config=configs/v2_lenet.py --workdir=/tmp/v2_lenet

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=astrospectra_mnist/v2_synthetic.

Measured in the synthetic suite of 2026-12-01 (history: benchmarks/README.md): one epoch of this
configuration (`--config.num_epochs=1`) on v2_synthetic took 19 s on a 2-core CPU (6431 training
examples/s); test accuracy 0.803 on simulated spectra. The configuration as written (28x28, 20
epochs) has not been timed.
"""

from configs.base import get_base_config


def get_config():
    config = get_base_config()
    config.dataset = "astrospectra_mnist/v2"
    config.model.name = "lenet"
    config.model.input_size = 28
    config.optimizer.learning_rate = 1e-3
    config.schedule = "cosine"
    config.num_epochs = 20
    return config
