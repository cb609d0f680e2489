"""astrospectra-jax: the AstroSpectra-MNIST benchmark in JAX/Flax.

Importing the package registers the TFDS builders ``astrospectra_mnist`` and
``line_astro_spectra`` where TensorFlow Datasets is installed, so that
``tfds.load("astrospectra_mnist/v2_synthetic")`` works. Without it (a bare accelerator image),
the models, the training step and loop on in-memory arrays, sharding and checkpointing still
import and run.

The package's stages, in the order data flows: ``data`` (FITS or simulator -> recipe ->
layout -> dataset catalogue), ``datasets`` (the TFDS builders, thin, over ``data``),
``models``, ``training``, ``classical``, ``report``; the command lines ``convert``, ``suite``
and ``report`` sit beside them.
"""

import importlib.util

__version__ = "0.1.0"

if importlib.util.find_spec("tensorflow_datasets") is not None:
    from astrospectra_jax import datasets  # noqa: F401  (registers the TFDS builders)
