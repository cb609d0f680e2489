"""The residual 1-D CNN on LineAstroSpectra-v2 (F / G / K stars): 721-value line vectors.

    python main.py --config=configs/line_v2_conv1d.py --workdir=/tmp/line_v2_conv1d

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=line_astro_spectra/v2_synthetic.

Runtime and accuracy: to be measured.
"""

from configs.base import get_base_config


def get_config():
    config = get_base_config()
    config.dataset = "line_astro_spectra/v2"
    config.model.name = "conv1d"
    config.model.input_size = 721
    config.optimizer.learning_rate = 1e-3
    config.schedule = "cosine"
    config.num_epochs = 30
    return config
