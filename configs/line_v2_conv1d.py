"""The residual 1-D CNN on LineAstroSpectra-v2 (F / G / K stars): 721-value line vectors.

    python main.py --config=configs/line_v2_conv1d.py --workdir=/tmp/line_v2_conv1d

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=line_astro_spectra/v2_synthetic.

Measured on 2026-12-02: one epoch of this configuration (`--config.num_epochs=1`) on v2_synthetic
took 67 s on a 2-core CPU including the compile (~950 training examples/s, 331 steps); test
accuracy 0.887 on simulated spectra. The configuration as written (30 epochs) has not been timed.
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
