"""ResNet-18 on AstroSpectra-MNIST-v2 (F / G / K stars): 28x28 images upsampled to 224x224 on
device (bilinear), as in the paper.

    python main.py --config=configs/v2_resnet18.py --workdir=/tmp/v2_resnet18

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=astrospectra_mnist/v2_synthetic.

Runtime and accuracy: to be measured.
"""

from configs.base import get_base_config


def get_config():
    config = get_base_config()
    config.dataset = "astrospectra_mnist/v2"
    config.model.name = "resnet18"
    config.model.input_size = 224
    config.optimizer.learning_rate = 1e-3
    config.schedule = "warmup_cosine"
    config.num_epochs = 15
    return config
