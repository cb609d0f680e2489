"""line_astro_spectra: LAMOST spectra as 721-value line vectors (LineAstroSpectra).

Configs ``v1`` / ``v2`` read real data from the manual folder (LAMOST FITS files, or the line
vectors written by ``python -m astrospectra_jax.convert``); ``v1_synthetic`` / ``v2_synthetic``
and ``*_synthetic_mini`` are simulated offline and are NOT LAMOST data.
"""

from __future__ import annotations

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from astrospectra_jax.data import catalogue, layout, recipe, sources, tasks
from astrospectra_jax.datasets import common

_DESCRIPTION = """\
LineAstroSpectra: the AstroSpectra-MNIST objects as 1-D vectors. Each spectrum is put on a
3601-point grid (3700-9100 A, 1.5 A steps, observed frame), smoothed by a centred width-5 mean
filter and sampled every 5th point: 721 float32 values (flux units of the source). v1 separates
STAR / GALAXY / QSO, v2 the stellar types F / G / K.
"""

class Builder(tfds.core.GeneratorBasedBuilder):
    """LineAstroSpectra vectors: real (manual FITS or converter output) and simulated configs."""

    VERSION = common.VERSION
    RELEASE_NOTES = common.RELEASE_NOTES
    BUILDER_CONFIGS = common.make_configs(
        "LAMOST spectra as line vectors, from FITS files or converter output (manual)")
    MANUAL_DOWNLOAD_INSTRUCTIONS = common.manual_instructions(catalogue.LINE_BUILDER)

    def _info(self) -> tfds.core.DatasetInfo:
        return common.dataset_info(
            self, _DESCRIPTION,
            tfds.features.Tensor(shape=(recipe.LINE_SIZE,), dtype=np.float32))

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        config = self.builder_config
        if config.synthetic:
            return common.synthetic_splits(self._generate_examples, config)
        manual = common.manual_dir_of(dl_manager)
        source = None if manual is None else catalogue.find_line_download(manual, config.task)
        if source is None:
            where = manual or getattr(dl_manager, "_manual_dir", None)
            raise FileNotFoundError(
                f"line_astro_spectra/{config.task}: neither a LineAstroSpectra-{config.task} "
                f"folder nor FITS files in {catalogue.FITS_SUBDIR}/{config.task}/ under the manual folder "
                f"{where}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        if source.name.lower() == f"lineastrospectra-{config.task}":
            splits = {split: self._read_converter_output(source, split)
                      for split in tasks.SPLITS}
        else:
            splits = self._read_fits(source)
        return {split: self._generate_examples(split, arrays=arrays)
                for split, arrays in splits.items()}

    def _read_converter_output(self, folder: epath.Path, split: str):
        task = self.builder_config.task
        path = layout.line_file(folder, split, task)
        if not path.exists():
            raise FileNotFoundError(f"{path}: {split} split of {folder} not found")
        with path.open("rb") as f:
            return layout.read_line_file(f, name=str(path))

    def _read_fits(self, folder: epath.Path):
        task = self.builder_config.task
        examples, skipped, n_files = sources.read_fits_folder(folder, task, progress=False)
        logging.info("line_astro_spectra/%s: %d of %d files usable; %s", task, len(examples),
                     n_files, skipped.summary(n_files))
        if not len(examples):
            raise ValueError(f"{folder}: no usable spectra for task {task}; "
                             + skipped.summary(n_files))
        train, test = sources.stratified_split(examples.labels, sources.DEFAULT_TEST_FRACTION,
                                               seed=0)
        return {split: (examples.ids[index], examples.lines[index], examples.labels[index])
                for split, index in (("train", train), ("test", test))}

    def _generate_examples(self, split: str, arrays=None, num: int = 0):
        """From (ids, lines, 0-based labels) arrays, or simulated in chunks."""
        config = self.builder_config
        if arrays is None:
            chunks = ((c.ids, c.lines, c.labels) for c in
                      sources.simulated_examples(config.task, num, config.seed, split))
        else:
            chunks = [arrays]
        for ids, lines, labels in chunks:
            for id_, line, label in zip(ids, lines, labels):
                yield str(id_), {"spectrum": line, "label": int(label), "id": str(id_)}
