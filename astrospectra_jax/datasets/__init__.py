"""TFDS builders for AstroSpectra-MNIST, as TFDS dataset folders; importing this package
registers them (``import astrospectra_jax`` does so where TensorFlow Datasets is installed).

- ``astrospectra_mnist``: 28x28 images (configs v1, v2, v1_synthetic, v2_synthetic, *_mini).
- ``line_astro_spectra``: 721-value line vectors (the same configs).

The builders are thin: their configs come from ``astrospectra_jax.data.catalogue`` and their
examples from ``astrospectra_jax.data`` (reader, recipe, simulator, layout); they import those
submodules, never the package's top level. Build one with
``python -m astrospectra_jax.datasets.build astrospectra_jax/datasets/astrospectra_mnist
--config v2_synthetic`` or load it with ``import astrospectra_jax;
tfds.load("astrospectra_mnist/...")``.
"""

from astrospectra_jax.datasets.astrospectra_mnist import (  # noqa: F401  (registers it)
    astrospectra_mnist_dataset_builder)
from astrospectra_jax.datasets.line_astro_spectra import (  # noqa: F401  (registers it)
    line_astro_spectra_dataset_builder)
