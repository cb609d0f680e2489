"""TFDS builders for AstroSpectra-MNIST; importing this package registers them.

- ``astrospectra_mnist``: 28x28 images (configs v1, v2, v1_synthetic, v2_synthetic, *_mini).
- ``line_astro_spectra``: 721-value line vectors (the same configs).

The builders are thin: their configs come from ``astrospectra_jax.data.catalogue`` and their
examples from ``astrospectra_jax.data`` (reader, recipe, simulator, layout). Build one with
``python -m tfds_builders.build tfds_builders/astrospectra_mnist --config v2_synthetic`` or load
it with ``import astrospectra_jax; tfds.load("astrospectra_mnist/...")``.
"""

from tfds_builders.astrospectra_mnist import astrospectra_mnist_dataset_builder  # noqa: F401
from tfds_builders.line_astro_spectra import line_astro_spectra_dataset_builder  # noqa: F401
