"""GoogLeNet on AstroSpectra-MNIST-v1 (STAR / GALAXY / QSO): 28x28 images upsampled to 224x224 on
device (bilinear), as in the paper.

    python main.py --config=configs/v1_googlenet.py --workdir=/tmp/v1_googlenet

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=astrospectra_mnist/v1_synthetic.

Measured in the synthetic suite of 2026-12-01 (history: benchmarks/README.md): one epoch of its
native 28x28 variant (`--config.model.input_size=28 --config.num_epochs=1`) on v1_synthetic took
24 min 52 s on a 2-core CPU with the classical grid sharing the cores (6 training examples/s); test
accuracy 0.495 on simulated spectra. The configuration as written (224x224, 15 epochs) has not been
timed. After 62 steps the batch-norm running variances still carry their initial value (README),
hence the near-chance test accuracy.
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
