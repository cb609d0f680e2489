"""GoogLeNet on AstroSpectra-MNIST-v1 (STAR / GALAXY / QSO): 28x28 images upsampled to 224x224 on
device (bilinear), as in the paper.

    python main.py --config=configs/v1_googlenet.py --workdir=/tmp/v1_googlenet

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=astrospectra_mnist/v1_synthetic.

Runtime and accuracy: to be measured.
"""

from configs.base import get_base_config


def get_config():
    config = get_base_config()
    config.dataset = "astrospectra_mnist/v1"
    config.model.name = "googlenet"
    config.model.input_size = 224
    config.optimizer.learning_rate = 1e-3
    config.schedule = "warmup_cosine"
    config.num_epochs = 15
    return config
