"""python main.py --config=configs/classical_v1.py --workdir=runs/classical_v1

The classical scikit-learn grid (89 configurations) on AstroSpectra-MNIST-v1 images (the paper's
Table 1-1, column v1).

Without the real data (simulated spectra, labelled synthetic in every result file):

    python main.py --config=configs/classical_v1.py --config.dataset=astrospectra_mnist/v1_synthetic --workdir=runs/classical_v1_synthetic

Subsets: ``--config.classifiers=RandomForestClassifier,SGDClassifier``, ``--config.rows=0,1,2``;
a quick look: ``--config.train_subsample=1000``. Rerunning a command resumes: finished
configurations are read back from ``<workdir>/classical_store/``. On a Dask cluster:
``--config.backend=dask --config.scheduler_address=tcp://HOST:8786``.

Runtime and accuracy: see docs/reproduce.md ("The classical grid").
"""

from astrospectra_jax.classical import grid


def get_config():
    config = grid.base_config()
    config.dataset = "astrospectra_mnist/v1"
    config.time_budget_s = 3600.0  # per configuration: about an hour; 0 = no limit
    return config
