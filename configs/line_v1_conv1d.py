"""The residual 1-D CNN on LineAstroSpectra-v1 (STAR / GALAXY / QSO): 721-value line vectors.

    python main.py --config=configs/line_v1_conv1d.py --workdir=/tmp/line_v1_conv1d

Offline, on simulated spectra (labelled synthetic in every result file): add
--config.dataset=line_astro_spectra/v1_synthetic.

Measured on 2026-12-02: one epoch of this configuration (`--config.num_epochs=1`) on v1_synthetic
took 25 s on a 2-core CPU including the compile (933 training examples/s, 62 steps); test accuracy
0.971 on simulated spectra. The configuration as written (30 epochs) has not been timed.
"""

from configs.base import get_base_config


def get_config():
    config = get_base_config()
    config.dataset = "line_astro_spectra/v1"
    config.model.name = "conv1d"
    config.model.input_size = 721
    config.optimizer.learning_rate = 1e-3
    config.schedule = "cosine"
    config.num_epochs = 30
    return config
