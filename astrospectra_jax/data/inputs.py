"""Inputs for a trained model from files and folders: FITS spectra (LAMOST, SDSS) through the
recipe, the Kaggle layout and loose PNGs, line-vector ``.npz`` files.

``collect_inputs`` turns paths into feature rows of the modality a model takes (images (28, 28, 1)
uint8 or line vectors (721,) float32), each with its id, file and true class where the input
carries one; what cannot be used is listed with the reason. ``predict`` and
``config.eval_datasets`` (training) read folders through it.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from astrospectra_jax.data import layout, readers, recipe, tasks

_KAGGLE_CSV = re.compile(r"^(train|test)_labels(v\d+)\.csv$", re.IGNORECASE)
_LINE_NPZ_TASK = re.compile(r"_spectra(v\d+)\.npz$", re.IGNORECASE)
_FITS_SUFFIXES = (".fits", ".fits.gz")


@dataclasses.dataclass
class Inputs:
    """Usable inputs (one feature row each) and the inputs left out, with reasons."""

    ids: list[str] = dataclasses.field(default_factory=list)
    files: list[str] = dataclasses.field(default_factory=list)
    features: list[np.ndarray] = dataclasses.field(default_factory=list)
    true_classes: list[str | None] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (file, reason)
    ignored: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, id_: str, file, feature: np.ndarray, true_class: str | None) -> None:
        self.ids.append(str(id_))
        self.files.append(str(file))
        self.features.append(feature)
        self.true_classes.append(true_class)

    def skip(self, file, reason: str) -> None:
        self.skipped.append((str(file), reason.removeprefix(f"{file}: ")))  # the file once


def collect_inputs(paths: Sequence, modality: str, task: str, *, progress: bool = True
                   ) -> Inputs:
    """Every input under ``paths`` as ``modality`` features ("image" (28, 28, 1) uint8 or "line"
    (721,) float32), with true classes named for ``task`` where the input carries one."""
    inputs = Inputs()
    fits_files, pngs, npzs = [], [], []
    for path in map(Path, paths):
        if path.is_dir():
            kaggle_images = set()
            for labels_csv in sorted(path.rglob("*.csv")):
                match = _KAGGLE_CSV.match(labels_csv.name)
                if match:
                    split, layout_task = match.group(1).lower(), match.group(2)
                    kaggle_images.add(layout.images_dir(labels_csv.parent, split, layout_task))
                    if modality == "image" and task and layout_task.lower() != task:
                        inputs.skip(labels_csv, f"a Kaggle layout of task {layout_task} ("
                                    f"{tasks.DESCRIPTIONS.get(layout_task.lower(), 'unknown')}"
                                    "); the model classifies "
                                    f"{task} ({tasks.DESCRIPTIONS[task]}): not scored")
                    elif modality == "image":
                        _add_kaggle_split(inputs, labels_csv, split, layout_task, progress)
            files = sorted(p for p in path.rglob("*") if p.is_file())
            fits_files += [p for p in files if p.name.lower().endswith(_FITS_SUFFIXES)]
            loose = [p for p in files if p.suffix.lower() == ".png"
                     and p.parent not in kaggle_images]
            npz = [p for p in files if p.suffix.lower() == ".npz"]
            # A converted folder holds both forms of every object: use the one the model takes.
            if modality == "image":
                pngs += loose
                inputs.ignored["line-vector .npz files (an image model needs images or "
                               "spectra)"] += len(npz)
            else:
                npzs += npz
                inputs.ignored["PNG images (a line model needs spectra or line vectors)"] += (
                    len(loose) + sum(len(list(d.glob("*.png"))) for d in kaggle_images
                                     if d.is_dir()))
        elif path.is_file():
            name = path.name.lower()
            if name.endswith(_FITS_SUFFIXES):
                fits_files.append(path)
            elif name.endswith(".png") and modality == "image":
                pngs.append(path)
            elif name.endswith(".npz") and modality == "line":
                npzs.append(path)
            elif name.endswith((".png", ".npz")):
                inputs.skip(path, f"a {'PNG image' if modality == 'line' else 'line-vector file'} "
                                  f"cannot feed a{'' if modality == 'line' else 'n'} "
                                  f"{modality} model "
                                  "(give the spectrum instead)")
            else:
                inputs.skip(path, "unsupported file type (expected .fits, .fits.gz, .png, "
                                  ".npz or a folder)")
        else:
            inputs.skip(path, "no such file or folder")
    for path in tqdm(fits_files, desc="reading spectra", unit="file", disable=not progress or not fits_files):
        _add_spectrum(inputs, path, modality, task)
    for path in tqdm(pngs, desc="reading images", unit="file",
                     disable=not progress or not pngs):
        try:
            inputs.add(_stem(path), path, layout.read_image(path), None)
        except ValueError as err:
            inputs.skip(path, str(err))
    for path in npzs:
        _add_line_file(inputs, path, task)
    return inputs


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".fits.gz", ".fits", ".png", ".npz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _add_spectrum(inputs: Inputs, path: Path, modality: str, task: str) -> None:
    try:
        spectrum = readers.read_spectrum(path)
        flux = spectrum.on_grid()
    except (readers.SpectrumReadError, recipe.BadSpectrumError, OSError) as err:
        inputs.skip(path, str(err).removeprefix(f"{path}: "))
        return
    feature = recipe.image(flux)[..., None] if modality == "image" else recipe.line_vector(flux)
    inputs.add(_stem(path), path, feature,
               tasks.class_of(task, spectrum.obj_class, spectrum.subclass))


def _add_kaggle_split(inputs: Inputs, labels_csv: Path, split: str, layout_task: str,
                      progress: bool) -> None:
    images = layout.images_dir(labels_csv.parent, split, layout_task)
    try:
        names = tasks.class_names(layout_task)
        rows = layout.read_labels(labels_csv, images, layout_task)
    except (ValueError, OSError) as err:
        inputs.skip(labels_csv, str(err))
        return
    for name, label in tqdm(rows, desc=f"reading {labels_csv.parent.name} {split}", unit="img",
                            disable=not progress):
        path = images / name
        try:
            inputs.add(_stem(path), path, layout.read_image(path), names[label])
        except ValueError as err:
            inputs.skip(path, str(err))


def _add_line_file(inputs: Inputs, path: Path, task: str) -> None:
    """A LineAstroSpectra file (labels 1..3 of the task in its name), or any npz whose
    ``spectra`` array holds (N, 721) line vectors (``ids`` and ``labels`` optional)."""
    match = _LINE_NPZ_TASK.search(path.name)
    file_task = match.group(1) if match and match.group(1) in tasks.TASKS else task
    try:
        with np.load(path, allow_pickle=False) as data:
            has_labels = "labels" in data.files
            if not has_labels:
                if "spectra" not in data.files:
                    raise ValueError(f"no 'spectra' array (has {data.files})")
                lines = data["spectra"].astype(np.float32)
                ids = (data["ids"].astype(str) if "ids" in data.files
                       else np.array([f"{_stem(path)}_{i}" for i in range(len(lines))]))
        if has_labels:
            ids, lines, labels = layout.read_line_file(path, name=str(path))
        elif lines.ndim != 2 or lines.shape[1] != recipe.LINE_SIZE or len(ids) != len(lines):
            raise ValueError(f"spectra {lines.shape} and {len(ids)} ids: expected "
                             f"(N, {recipe.LINE_SIZE}) and N ids")
    except (ValueError, OSError) as err:
        inputs.skip(path, str(err).removeprefix(f"{path}: "))
        return
    names = tasks.CLASS_NAMES[file_task]
    finite = np.all(np.isfinite(lines), axis=1)
    for i, (id_, line) in enumerate(zip(ids, lines)):
        if not finite[i]:
            inputs.skip(f"{path}[{id_}]", "line vector holds non-finite values")
            continue
        inputs.add(id_, path, line, names[labels[i]] if has_labels else None)
