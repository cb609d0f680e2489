"""The datasets by name: what each holds (``info``), where its real data comes from, and
whole splits as numpy (``load_arrays``).

Names are ``<builder>/<config>`` of the project's TFDS builders (``astrospectra_mnist/v2``,
``line_astro_spectra/v1_synthetic`` ...) plus ``fashion_mnist``. ``*_synthetic`` configs are
simulated, not LAMOST data; they are built on first use. Real configs need a manual download
and raise ``DatasetNotFoundError`` saying what to get and where to put it.

Everything here but ``load_arrays`` works without TensorFlow: the TFDS
builders take their configs from this table, not the other way round.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
from etils import epath

from astrospectra_jax.data import layout, recipe, tasks

KAGGLE_DATASET = "zzuygs/astrospectra-mnist-dataset"
KAGGLE_URL = "https://www.kaggle.com/datasets/zzuygs/astrospectra-mnist-dataset"
KAGGLE_ZIP = "astrospectra-mnist-dataset.zip"
DEFAULT_MANUAL_DIR = "~/tensorflow_datasets/downloads/manual/"
# manual_dir/line_astro_spectra/v1/, .../v2/: FITS files for the real line_astro_spectra configs
FITS_SUBDIR = "line_astro_spectra"

SYNTHETIC_WARNING = (
    "SIMULATED DATA, NOT LAMOST OBSERVATIONS: every spectrum of this config comes from the "
    "project's offline simulator (astrospectra_jax.data.simulator) and went through the same "
    "recipe as real spectra. Results on it say nothing about the real benchmark; report them "
    "as synthetic.")

IMAGE_BUILDER, LINE_BUILDER = "astrospectra_mnist", "line_astro_spectra"
MODALITY = {IMAGE_BUILDER: "image", LINE_BUILDER: "line"}
FEATURE = {"image": "image", "line": "spectrum"}
FEATURE_SHAPE = {"image": (recipe.IMAGE_SIDE, recipe.IMAGE_SIDE, 1), "line": (recipe.LINE_SIZE,)}
# The labels of Fashion-MNIST, as TFDS names them (the classical grid's third dataset).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")


@dataclasses.dataclass(frozen=True)
class ConfigSpec:
    """One config of both builders: a task, real or simulated (then with sizes and seed)."""

    name: str
    task: str
    synthetic: bool
    num_train: int = 0  # synthetic configs only
    num_test: int = 0
    seed: int = tasks.SYNTHETIC_SEED

    @property
    def class_names(self) -> tuple[str, ...]:
        return tasks.CLASS_NAMES[self.task]


def _configs() -> tuple[ConfigSpec, ...]:
    """v1, v2 (real), v1_synthetic, v2_synthetic (paper sizes), *_synthetic_mini."""
    configs = [ConfigSpec(task, task, False) for task in tasks.TASKS]
    for suffix in ("", "_mini"):
        for task in tasks.TASKS:
            n_train, n_test = (tasks.MINI_SPLIT_SIZES if suffix
                               else tasks.PAPER_SPLIT_SIZES[task])
            configs.append(ConfigSpec(f"{task}_synthetic{suffix}", task, True, n_train, n_test))
    return tuple(configs)


CONFIGS = _configs()
KNOWN_DATASETS: tuple[str, ...] = tuple(
    f"{builder}/{config.name}" for builder in MODALITY for config in CONFIGS) + ("fashion_mnist",)


class DatasetNotFoundError(RuntimeError):
    """A real dataset whose manual download is missing (the message says what to do)."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    modality: str  # "image" or "line"
    class_names: tuple[str, ...]
    num_classes: int
    synthetic: bool
    feature_shape: tuple[int, ...]
    task: str | None = None  # "v1" / "v2"; None for fashion_mnist


def info(name: str) -> DatasetSpec:
    """What ``name`` holds; builds and reads nothing."""
    if name not in KNOWN_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    if name == "fashion_mnist":
        names = FASHION_MNIST_CLASSES
        return DatasetSpec(name, "image", names, len(names), False, FEATURE_SHAPE["image"])
    builder_name, config_name = name.split("/")
    config = next(c for c in CONFIGS if c.name == config_name)
    modality = MODALITY[builder_name]
    return DatasetSpec(name, modality, config.class_names, len(config.class_names),
                       config.synthetic, FEATURE_SHAPE[modality], config.task)


def is_line_dataset(name: str) -> bool:
    """True for the line-vector datasets (``line_astro_spectra/...``)."""
    return name.split("/")[0] == LINE_BUILDER


# ----------------------------------------------------------------------------- manual downloads

def find_dirs(root, name: str) -> Iterator[epath.Path]:
    """Folders called ``name`` (case-insensitive) under ``root``, shallowest first.

    A match is not searched further, so a found dataset's own files are never walked.
    """
    level = [epath.Path(root)]
    while level:
        next_level = []
        for folder in level:
            for child in sorted(folder.iterdir()):
                if not child.is_dir():
                    continue
                if child.name.lower() == name.lower():
                    yield child
                else:
                    next_level.append(child)
        level = next_level


def find_files(root, suffixes: str | tuple[str, ...]) -> Iterator[epath.Path]:
    """Files ending in one of ``suffixes`` (lower case) under ``root``, shallowest first."""
    level = [epath.Path(root)]
    while level:
        next_level = []
        for folder in level:
            for child in sorted(folder.iterdir()):
                if child.is_dir():
                    next_level.append(child)
                elif child.name.lower().endswith(suffixes):
                    yield child
        level = next_level


def find_kaggle_download(manual_dir, task: str) -> epath.Path | None:
    """The ``AstroSpectra-MNIST-<task>`` folder under ``manual_dir``, else the Kaggle zip."""
    manual_dir = epath.Path(manual_dir)
    if not manual_dir.is_dir():
        return None
    found = next(find_dirs(manual_dir, f"AstroSpectra-MNIST-{task}"), None)
    if found is None:
        found = next((p for p in find_files(manual_dir, ".zip")
                      if "astrospectra" in p.name.lower()), None)
    return found


def find_line_download(manual_dir, task: str) -> epath.Path | None:
    """Converter output ``LineAstroSpectra-<task>`` (any depth), else the FITS folder, else None."""
    manual_dir = epath.Path(manual_dir)
    if not manual_dir.is_dir():
        return None
    for folder in find_dirs(manual_dir, f"LineAstroSpectra-{task}"):
        if layout.line_file(folder, "train", task).exists():
            return folder
    fits_dir = manual_dir / FITS_SUBDIR / task
    if fits_dir.is_dir() and any(find_files(fits_dir, (".fits", ".fits.gz"))):
        return fits_dir
    return None


_FIND_DOWNLOAD = {IMAGE_BUILDER: find_kaggle_download, LINE_BUILDER: find_line_download}


# ----------------------------------------------------------------------------- loading (TFDS)

def load_arrays(name: str, split: str, *, data_dir: str | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """One split as numpy: (images (N, 28, 28, 1) uint8 or spectra (N, 721) float32,
    labels (N,) int32 0-based). Builds a synthetic config that is not prepared yet."""
    import tensorflow_datasets as tfds  # TensorFlow loads here, not on import

    spec = info(name)
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        _prepare(builder, spec)
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    features = np.asarray(data[FEATURE[spec.modality]])
    features = features.astype(np.uint8 if spec.modality == "image" else np.float32, copy=False)
    return features, np.asarray(data["label"]).astype(np.int32)


def _prepare(builder, spec: DatasetSpec) -> None:
    if spec.name == "fashion_mnist":
        try:
            builder.download_and_prepare()
        except Exception as err:  # network errors come in many types
            raise DatasetNotFoundError(
                f"fashion_mnist is not prepared in {builder.data_dir_root} and could not be "
                f"downloaded ({type(err).__name__}: {err}). Prepare it on a machine with "
                f"network access: tfds build fashion_mnist --data_dir {builder.data_dir_root}"
            ) from err
        return
    if not spec.synthetic:
        builder_name, config_name = spec.name.split("/")
        manual = epath.Path(builder.data_dir_root) / "downloads" / "manual"
        if _FIND_DOWNLOAD[builder_name](manual, config_name) is None:
            raise DatasetNotFoundError(_missing_message(spec, manual, builder.data_dir_root))
    else:  # TFDS would print "Downloading ... Unknown size" for what is simulated here
        from absl import logging

        builder._log_download_bytes = lambda: logging.info(
            "Building %s (simulated spectra) in %s", spec.name, builder.data_dir)
        builder._log_download_done = lambda: None
    builder.download_and_prepare()


def _missing_message(spec: DatasetSpec, manual: epath.Path, data_dir) -> str:
    builder, task = spec.name.split("/")
    return (f"{spec.name} is real LAMOST data and is not prepared in {data_dir}; its manual "
            f"download is missing.\n{manual_download(builder, task, manual)}"
            f"  To run offline use --config.dataset={spec.name}_synthetic (simulated spectra, not "
            "LAMOST data).")


def manual_download(builder: str, task: str | None = None, manual=None) -> str:
    """What the real configs of ``builder`` need and where it goes: the one text behind
    ``DatasetNotFoundError`` and the builders' ``MANUAL_DOWNLOAD_INSTRUCTIONS``.

    ``task`` None: v1 and v2; ``manual`` None: TFDS's default manual folder.
    """
    shown = ("v1", "v2") if task is None else (task,)
    folder = DEFAULT_MANUAL_DIR if manual is None else f"{manual}/"
    other = " (<data_dir>/downloads/manual/ for another --data_dir)" if manual is None else ""
    if builder == IMAGE_BUILDER:
        what = (f"the Kaggle dataset {KAGGLE_DATASET} ({KAGGLE_URL}), e.g. "
                f"`kaggle datasets download {KAGGLE_DATASET}`")
        where = (f"{folder}{other} (the file {KAGGLE_ZIP}, or the folder extracted from it that holds "
                 f"{' or '.join(f'AstroSpectra-MNIST-{t}/' for t in shown)}; found at any depth; "
                 "folders written by `python -m astrospectra_jax.convert` work too)")
    else:
        classes = " or ".join(f"{t} ({', '.join(tasks.CLASS_NAMES[t])})" for t in shown)
        subdirs = " or ".join(f"{folder}{FITS_SUBDIR}/{t}/" for t in shown)
        where = (f"{subdirs} (the FITS files: DR1, DR8 or DR10 layout, .fits or "
                 ".fits.gz, any sub-folders; labels from the headers, v1: CLASS "
                 "STAR/GALAXY/QSO, v2: first letter of SUBCLASS F/G/K, other classes skipped; "
                 f"split stratified, {tasks.DEFAULT_TEST_FRACTION:.0%} test, seed 0), or the "
                 f"{' or '.join(f'LineAstroSpectra-{t}' for t in shown)} folder written by "
                 f"`python -m astrospectra_jax.convert fits` anywhere under {folder}{other}")
        what = (f"LAMOST low-resolution spectra (FITS) of the {classes} classes, from "
                f"https://www.lamost.org/ (the Kaggle dataset {KAGGLE_URL} holds images only)")
    return f"  What to download: {what}.\n  Where to put it: {where}.\n"
