"""python main.py --config=configs/classical_v2.py --workdir=runs/classical_v2

The classical scikit-learn grid (89 configurations) on AstroSpectra-MNIST-v2 images (the paper's
Table 1-1, column v2).

Without the real data (simulated spectra, labelled synthetic in every result file):

    python main.py --config=configs/classical_v2.py --config.dataset=astrospectra_mnist/v2_synthetic --workdir=runs/classical_v2_synthetic

Subsets: ``--config.classifiers=RandomForestClassifier,SGDClassifier``, ``--config.rows=0,1,2``;
a quick look: ``--config.train_subsample=1000``. Rerunning a command resumes: finished
configurations are read back from ``<workdir>/classical_store/``. On a Dask cluster:
``--config.backend=dask --config.scheduler_address=tcp://HOST:8786``.

Runtime and accuracy: see docs/reproduce.md ("The classical grid").
"""

from astrospectra_jax.classical import grid


def get_config():
    config = grid.base_config()
    config.dataset = "astrospectra_mnist/v2"
    config.time_budget_s = 14400.0  # per configuration: about four hours; 0 = no limit
    return config
