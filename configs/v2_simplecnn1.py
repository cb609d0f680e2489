"""SimpleCNN1 on AstroSpectra-MNIST-v2 (F / G / K stars): native 28x28 images.

    python main.py --config=configs/v2_simplecnn1.py --workdir=/tmp/v2_simplecnn1

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=astrospectra_mnist/v2_synthetic.

Runtime and accuracy: to be measured.
"""

from configs.base import get_base_config


def get_config():
    config = get_base_config()
    config.dataset = "astrospectra_mnist/v2"
    config.model.name = "simplecnn1"
    config.model.input_size = 28
    config.optimizer.learning_rate = 1e-3
    config.schedule = "cosine"
    config.num_epochs = 20
    return config
