"""AlexNet on AstroSpectra-MNIST-v1 (STAR / GALAXY / QSO): 28x28 images upsampled to 224x224 on
device (bilinear), as in the paper.

    python main.py --config=configs/v1_alexnet.py --workdir=/tmp/v1_alexnet

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=astrospectra_mnist/v1_synthetic.
A lower learning rate (1e-4) than the others: these nets have no batch norm.

Runtime and accuracy: to be measured.
"""

from configs.base import get_base_config


def get_config():
    config = get_base_config()
    config.dataset = "astrospectra_mnist/v1"
    config.model.name = "alexnet"
    config.model.input_size = 224
    config.optimizer.learning_rate = 1e-4
    config.schedule = "warmup_cosine"
    config.num_epochs = 15
    return config
