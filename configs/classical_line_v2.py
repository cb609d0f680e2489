"""python main.py --config=configs/classical_line_v2.py --workdir=runs/classical_line_v2

The classical scikit-learn grid (89 configurations) on LineAstroSpectra-v2 line vectors against
the images of the same objects (the paper's Table 1-2).

Without the real data (simulated spectra, labelled synthetic in every result file):

    python main.py --config=configs/classical_line_v2.py --config.dataset=line_astro_spectra/v2_synthetic --workdir=runs/classical_line_v2_synthetic

Subsets: ``--config.classifiers=RandomForestClassifier,SGDClassifier``, ``--config.rows=0,1,2``;
a quick look: ``--config.train_subsample=1000``. Rerunning a command resumes: finished
configurations are read back from ``<workdir>/classical_store/``. On a Dask cluster:
``--config.backend=dask --config.scheduler_address=tcp://HOST:8786``.

Next to the paper's image column, the line table shows our image accuracy where the image grid
on the matching dataset has been run: pass its workdir,
``--config.image_workdir=runs/classical_v2`` (or ``runs/classical_v2_synthetic`` for the
synthetic variant).

Runtime and accuracy: see docs/reproduce.md ("The classical grid").
"""

from astrospectra_jax.classical import grid


def get_config():
    config = grid.base_config()
    config.dataset = "line_astro_spectra/v2"
    config.time_budget_s = 14400.0  # per configuration: about four hours; 0 = no limit
    return config
