"""TFDS's own builder checks on line_astro_spectra: v1 from converter output and v2 from
DR8-layout FITS files in dummy_data/, the synthetic configs at their mini sizes."""

import tensorflow_datasets as tfds

from astrospectra_jax.datasets import common
from astrospectra_jax.datasets.line_astro_spectra import (
    line_astro_spectra_dataset_builder as module)


class RealConfigsTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = module.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["v1", "v2"]
    # v2: 20 usable FITS files (an A star and a broken file are skipped), 15% test.
    SPLITS = {"train": 17, "test": 3}


SyntheticMiniConfigsTest = common.synthetic_mini_test(module.Builder)


if __name__ == "__main__":
    tfds.testing.test_main()
