"""The datasets by name: what they hold (``info``) and whole splits as numpy (``load_arrays``).

Names are ``<builder>/<config>`` of the project's TFDS builders (``astrospectra_mnist/v2``,
``line_astro_spectra/v1_synthetic`` ...) plus ``fashion_mnist``. ``*_synthetic`` configs are
simulated, not LAMOST data; they are built on first use. Real configs need a manual download
and raise ``DatasetNotFoundError`` saying what to get and where to put it.
"""

from __future__ import annotations

import dataclasses
import functools

from etils import epath
import numpy as np

from astrospectra_jax import convert, spectra
from tfds_builders import common
from tfds_builders.astrospectra_mnist import astrospectra_mnist_dataset_builder as image_builder
from tfds_builders.line_astro_spectra import line_astro_spectra_dataset_builder as line_builder

_BUILDERS = {"astrospectra_mnist": image_builder, "line_astro_spectra": line_builder}
_KIND = {"astrospectra_mnist": "image", "line_astro_spectra": "line"}
_FEATURE = {"image": "image", "line": "spectrum"}
_FEATURE_SHAPE = {"image": (spectra.IMAGE_SIDE, spectra.IMAGE_SIDE, 1),
                  "line": (spectra.LINE_SIZE,)}

KNOWN_DATASETS: tuple[str, ...] = tuple(
    f"{name}/{config.name}" for name, module in _BUILDERS.items()
    for config in module.Builder.BUILDER_CONFIGS) + ("fashion_mnist",)


class DatasetNotFoundError(RuntimeError):
    """A real dataset whose manual download is missing (the message says what to do)."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str  # "image" or "line"
    class_names: tuple[str, ...]
    num_classes: int
    synthetic: bool
    feature_shape: tuple[int, ...]


def info(name: str) -> DatasetSpec:
    """What ``name`` holds; builds and reads nothing."""
    if name not in KNOWN_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(KNOWN_DATASETS)}")
    if name == "fashion_mnist":
        names = _fashion_mnist_classes()
        return DatasetSpec(name, "image", names, len(names), False, _FEATURE_SHAPE["image"])
    builder_name, config_name = name.split("/")
    config = _BUILDERS[builder_name].Builder.builder_configs[config_name]
    kind = _KIND[builder_name]
    return DatasetSpec(name, kind, config.class_names, len(config.class_names),
                       config.synthetic, _FEATURE_SHAPE[kind])


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
    features = np.asarray(data[_FEATURE[spec.kind]])
    features = features.astype(np.uint8 if spec.kind == "image" else np.float32, copy=False)
    return features, np.asarray(data["label"]).astype(np.int32)


def manual_dir(data_dir: str | None = None) -> epath.Path:
    """The manual-download folder TFDS uses for ``data_dir`` (default data dir if None)."""
    import tensorflow_datasets as tfds

    root = tfds.builder("astrospectra_mnist/v2", data_dir=data_dir).data_dir_root
    return epath.Path(root) / "downloads" / "manual"


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
        if _BUILDERS[builder_name].find_manual_data(manual, config_name) is None:
            raise DatasetNotFoundError(_missing_message(spec, manual, builder.data_dir_root))
    builder.download_and_prepare()


def _missing_message(spec: DatasetSpec, manual: epath.Path, data_dir) -> str:
    task = spec.name.split("/")[1]
    offline = f"{spec.name}_synthetic"
    if spec.kind == "image":
        what = (f"the Kaggle dataset {common.KAGGLE_DATASET} ({common.KAGGLE_URL}), e.g. "
                f"`kaggle datasets download {common.KAGGLE_DATASET}`")
        where = (f"{manual}/ (the file {common.KAGGLE_ZIP}, or the folder extracted from it "
                 f"that holds AstroSpectra-MNIST-{task}/)")
    else:
        what = (f"LAMOST low-resolution spectra (FITS) of the {task} classes "
                f"({', '.join(convert.CLASS_NAMES[task])}), from https://www.lamost.org/")
        where = (f"{manual / line_builder.FITS_SUBDIR / task}/ (the FITS files), or the "
                 f"LineAstroSpectra-{task} folder written by `python -m astrospectra_jax.convert "
                 f"fits` anywhere under {manual}/")
    return (f"{spec.name} is real LAMOST data and is not prepared in {data_dir}; its manual "
            f"download is missing.\n  What to download: {what}.\n  Where to put it: {where}.\n"
            f"  To run offline use --config.dataset={offline} (simulated spectra, not LAMOST "
            "data).")


@functools.cache
def _fashion_mnist_classes() -> tuple[str, ...]:
    import tensorflow_datasets as tfds

    return tuple(tfds.builder_cls("fashion_mnist")().info.features["label"].names)
