"""ResNet-18 on AstroSpectra-MNIST-v2 (F / G / K stars): 28x28 images upsampled to 224x224 on
device (bilinear), as in the paper.

    python main.py --config=configs/v2_resnet18.py --workdir=/tmp/v2_resnet18

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=astrospectra_mnist/v2_synthetic.

Measured in the synthetic suite of 2026-12-01 (history: benchmarks/README.md): one epoch of its
native 28x28 variant (`--config.model.input_size=28 --config.num_epochs=1`) on v2_synthetic took
18 min 31 s on a 2-core CPU (42 training examples/s); test accuracy 0.892 on simulated spectra. The
configuration as written (224x224, 15 epochs) has not been timed.
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
