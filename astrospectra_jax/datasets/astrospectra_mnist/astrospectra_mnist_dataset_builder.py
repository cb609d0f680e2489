"""astrospectra_mnist: LAMOST spectra as 28x28 grayscale images (AstroSpectra-MNIST).

Configs ``v1`` (STAR / GALAXY / QSO) and ``v2`` (F / G / K) read the Kaggle download (manual);
``v1_synthetic`` / ``v2_synthetic`` (the paper's split sizes) and ``*_synthetic_mini`` are
simulated offline and are NOT LAMOST data.
"""

from __future__ import annotations

from absl import logging
from etils import epath
import tensorflow_datasets as tfds

from astrospectra_jax.data import catalogue, layout, sources, tasks
from astrospectra_jax.datasets import common

_DESCRIPTION = """\
AstroSpectra-MNIST: LAMOST low-resolution spectra turned into 28x28 grayscale images, one per
spectrum, in the MNIST format. v1 separates STAR / GALAXY / QSO (8000 train, 1000 test), v2 the
stellar types F / G / K (42454 train, 7546 test). Images of the synthetic configs follow the
project's recipe (3601-point grid 3700-9100 A, mean over 784 bins, min-max scaled to 0..255).
"""

_CITATION = """\
@misc{astrospectra_mnist,
  title = {AstroSpectra-MNIST: a benchmark of LAMOST spectra as images},
  howpublished = {\\url{https://www.kaggle.com/datasets/zzuygs/astrospectra-mnist-dataset}},
}
"""


class Builder(tfds.core.GeneratorBasedBuilder):
    """AstroSpectra-MNIST images: real (Kaggle, manual download) and simulated configs."""

    VERSION = common.VERSION
    RELEASE_NOTES = common.RELEASE_NOTES
    BUILDER_CONFIGS = common.make_configs(
        "LAMOST DR1 spectra as images, from the Kaggle download (manual)")
    MANUAL_DOWNLOAD_INSTRUCTIONS = common.manual_instructions(catalogue.IMAGE_BUILDER)

    def _info(self) -> tfds.core.DatasetInfo:
        return common.dataset_info(self, _DESCRIPTION,
                                   tfds.features.Image(shape=layout.IMAGE_SHAPE),
                                   citation=_CITATION)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.synthetic:
            return common.synthetic_splits(self._generate_examples, config)
        task_dir = self._locate(dl_manager, config.task)
        for split in tasks.SPLITS:  # fail before writing anything
            layout.split_paths(task_dir, split, config.task)
        return {split: self._generate_examples(split, task_dir=task_dir)
                for split in tasks.SPLITS}

    def _locate(self, dl_manager, task: str) -> epath.Path:
        manual = common.manual_dir_of(dl_manager)
        found = None if manual is None else catalogue.find_kaggle_download(manual, task)
        if found is not None and not found.is_dir():  # the Kaggle zip
            extracted = dl_manager.extract(found)
            found = next(catalogue.find_dirs(extracted, f"AstroSpectra-MNIST-{task}"), None)
            if found is None:
                raise FileNotFoundError(
                    f"{extracted} (extracted from a zip in {manual}) holds no "
                    f"AstroSpectra-MNIST-{task} folder.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        if found is None:
            where = manual or getattr(dl_manager, "_manual_dir", None)
            raise FileNotFoundError(
                f"astrospectra_mnist/{task}: no AstroSpectra-MNIST-{task} folder or "
                f"{catalogue.KAGGLE_ZIP} in the manual folder {where}.\n"
                f"{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        return found

    def _generate_examples(self, split: str, task_dir=None, num: int = 0):
        config = self.builder_config
        if config.synthetic:
            for chunk in sources.simulated_examples(config.task, num, config.seed, split):
                for id_, image, label in zip(chunk.ids, chunk.images, chunk.labels):
                    yield id_, {"image": image[:, :, None], "label": int(label), "id": id_}
            return
        csv_path, images = layout.split_paths(task_dir, split, config.task)
        rows = layout.read_labels(csv_path, images, config.task)
        logging.info("astrospectra_mnist/%s %s: %d images listed in %s", config.name, split,
                     len(rows), csv_path)
        for name, label in rows:
            image = layout.read_image(images / name)
            yield name, {"image": image, "label": label, "id": name.rsplit(".", 1)[0]}
