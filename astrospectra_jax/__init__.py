"""astrospectra-jax: the AstroSpectra-MNIST benchmark in JAX/Flax.

Importing the package registers the TFDS builders ``astrospectra_mnist`` and
``line_astro_spectra``, so that ``tfds.load("astrospectra_mnist/v2_synthetic")`` works.
"""

__version__ = "0.1.0"

import tfds_builders  # noqa: F401,E402  (registers the TFDS builders)
