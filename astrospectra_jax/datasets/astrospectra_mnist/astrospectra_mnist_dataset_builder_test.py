"""TFDS's own builder checks on astrospectra_mnist: the real configs on dummy_data/ (a tiny
Kaggle layout with awkward CSVs), the synthetic ones at their mini sizes."""

import tensorflow_datasets as tfds

from astrospectra_jax.datasets import common
from astrospectra_jax.datasets.astrospectra_mnist import (
    astrospectra_mnist_dataset_builder as module)


class RealConfigsTest(tfds.testing.DatasetBuilderTestCase):
    DATASET_CLASS = module.Builder
    BUILDER_CONFIG_NAMES_TO_TEST = ["v1", "v2"]
    SPLITS = {"train": 6, "test": 3}  # dummy_data/: one unlisted PNG per split is ignored


SyntheticMiniConfigsTest = common.synthetic_mini_test(module.Builder)


if __name__ == "__main__":
    tfds.testing.test_main()
