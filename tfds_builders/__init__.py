"""TFDS builders for AstroSpectra-MNIST; importing this package registers them.

- ``astrospectra_mnist``: 28x28 images (configs v1, v2, v1_synthetic, v2_synthetic, *_mini).
- ``line_astro_spectra``: 721-value line vectors (the same configs).

Build one with ``python -m tfds_builders.build tfds_builders/astrospectra_mnist --config
v2_synthetic`` or load it with ``import astrospectra_jax; tfds.load("astrospectra_mnist/...")``.
"""

import warnings

# The builders import astrospectra_jax.convert, so `python -m astrospectra_jax.convert` finds it
# already imported and runpy warns. Harmless: the command-line copy keeps no state that the
# imported copy needs.
warnings.filterwarnings("ignore", category=RuntimeWarning,
                        message=r"'astrospectra_jax\.convert' found in sys\.modules")

from tfds_builders.astrospectra_mnist import astrospectra_mnist_dataset_builder  # noqa: E402,F401
from tfds_builders.line_astro_spectra import line_astro_spectra_dataset_builder  # noqa: E402,F401
