"""Read the Kaggle AstroSpectra-MNIST layout defensively.

The Kaggle CSVs' column names are undocumented, so columns are recognised by their values:
the file-name column holds names ending in ``.png`` (or names of files in the image folder,
with or without ``.png``), the label column integers 1..3 (or class names). A header row is
detected, not assumed. Errors name the file and the line.
"""

from __future__ import annotations

import csv
import re

from etils import epath
import numpy as np
from PIL import Image, UnidentifiedImageError

from astrospectra_jax import convert, spectra

IMAGE_SHAPE = (spectra.IMAGE_SIDE, spectra.IMAGE_SIDE, 1)
_INTEGER = re.compile(r"^[+-]?\d+(\.0*)?$")
_LABEL_HEADERS = ("label", "class", "target", "category", "type")
_FILE_HEADERS = ("image", "file", "name", "path", "img")
# Modes that hold one gray level per pixel or convert to one without loss of meaning.
_CONVERTIBLE_MODES = ("LA", "RGB", "RGBA", "P")


def split_paths(task_dir, split: str, task: str) -> tuple[epath.Path, epath.Path]:
    """(labels CSV, images folder) of one split; FileNotFoundError naming what is missing."""
    task_dir = epath.Path(task_dir)
    csv_path = task_dir / f"{split}_labels{task}.csv"
    images = task_dir / f"{split}_images{task}"
    for path, what in ((csv_path, "labels CSV"), (images, "image folder")):
        if not path.exists():
            raise FileNotFoundError(f"{path}: {what} of the {split} split not found "
                                    f"(expected the Kaggle layout AstroSpectra-MNIST-{task}/"
                                    f"{{train,test}}_images{task}/ and "
                                    f"{{train,test}}_labels{task}.csv)")
    return csv_path, images


def read_labels(csv_path, images_dir, task: str) -> list[tuple[str, int]]:
    """[(PNG file name, 0-based label)] in CSV order; checks that every image exists."""
    csv_path, images_dir = epath.Path(csv_path), epath.Path(images_dir)
    names = convert.CLASS_NAMES[task]
    rows = [(number, [cell.strip() for cell in row])
            for number, row in enumerate(csv.reader(csv_path.read_text().splitlines()), 1)
            if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{csv_path}: no rows")
    files = {p.name for p in images_dir.iterdir()}
    header, body = rows[0][1], rows[1:] or rows
    width = max(len(row) for _, row in rows)

    def column(i, which):
        return [row[i] if i < len(row) else "" for _, row in which]

    file_col = _file_column(csv_path, header, [column(i, body) for i in range(width)], files)
    label_col = _label_column(csv_path, header, [column(i, body) for i in range(width)],
                              names, skip=file_col)
    first = rows[0][1]
    first_is_data = (len(first) > max(file_col, label_col)
                     and _as_file(first[file_col], files) is not None
                     and _as_label(first[label_col], names) is not None)
    data = rows if first_is_data or body is rows else rows[1:]

    examples, seen = [], {}
    for number, row in data:
        where = f"{csv_path}, line {number}"
        if len(row) <= max(file_col, label_col):
            raise ValueError(f"{where}: {len(row)} columns, expected at least "
                             f"{max(file_col, label_col) + 1}")
        name = _as_file(row[file_col], files) or _png_name(row[file_col])
        if name not in files:
            raise FileNotFoundError(f"{where}: image {images_dir / name} not found")
        if name in seen:
            raise ValueError(f"{where}: image {name} already listed on line {seen[name]}")
        seen[name] = number
        label = _as_label(row[label_col], names)
        if label not in (1, 2, 3):
            raise ValueError(f"{where}: unknown label {row[label_col]!r} (expected 1, 2 or 3 "
                             f"= {', '.join(names)})")
        examples.append((name, label - 1))
    return examples


def read_image(path) -> np.ndarray:
    """One PNG as a (28, 28, 1) uint8 array; errors name the file."""
    path = epath.Path(path)
    try:
        with path.open("rb") as f:
            image = Image.open(f)
            image.load()
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from err
    if image.size != IMAGE_SHAPE[:2]:
        raise ValueError(f"{path}: image is {image.size[0]}x{image.size[1]} pixels, "
                         f"expected {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}")
    if image.mode in _CONVERTIBLE_MODES:
        image = image.convert("L")
    if image.mode != "L":
        raise ValueError(f"{path}: image mode {image.mode!r}, expected 8-bit grayscale ('L')")
    return np.asarray(image, dtype=np.uint8)[:, :, None]


def _png_name(value: str) -> str:
    return value.replace("\\", "/").rsplit("/", 1)[-1]


def _as_file(value: str, files: set[str]) -> str | None:
    """The image file a cell names: ``x.png`` (any folder prefix), or ``x`` for ``x.png``."""
    name = _png_name(value)
    if name.lower().endswith(".png"):
        return name
    if name in files:
        return name
    if f"{name}.png" in files:
        return f"{name}.png"
    return None


def _as_label(value: str, names: tuple[str, ...]) -> int | None:
    """1-based label from an integer cell or a class name; None if it is neither."""
    if _INTEGER.match(value):
        return int(float(value))
    upper = [n.upper() for n in names]
    return upper.index(value.upper()) + 1 if value.upper() in upper else None


def _named(header, index: int, words) -> bool:
    return index < len(header) and any(w in header[index].lower() for w in words)


def _file_column(csv_path, header, columns, files) -> int:
    png = [i for i, col in enumerate(columns) if all(v.lower().endswith(".png") for v in col)]
    if not png:  # names without extension: the column that names the most existing files
        hits = [sum(_as_file(v, files) in files for v in col) for col in columns]
        best = int(np.argmax(hits))
        png = [best] if hits[best] > len(columns[best]) / 2 else []
    if not png:
        raise ValueError(f"{csv_path}: no column holds image file names (values ending in "
                         f".png or naming the split's PNG files); first row: {header}")
    return next((i for i in png if _named(header, i, _FILE_HEADERS)), png[0])


def _label_column(csv_path, header, columns, names, *, skip: int) -> int:
    parsed = {i: [_as_label(v, names) for v in col] for i, col in enumerate(columns) if i != skip}
    candidates = [i for i, labels in parsed.items() if all(x is not None for x in labels)]
    if not candidates:
        raise ValueError(f"{csv_path}: no label column (integers 1..3 or class names "
                         f"{', '.join(names)}); first row: {header}")
    by_name = [i for i in candidates if _named(header, i, _LABEL_HEADERS)]
    in_range = [i for i in candidates if all(x in (1, 2, 3) for x in parsed[i])]
    for choice in (by_name, in_range, candidates):
        if len(choice) == 1:
            return choice[0]
    if by_name:
        return by_name[0]
    raise ValueError(f"{csv_path}: cannot tell the label column among columns "
                     f"{[header[i] if i < len(header) else i for i in candidates]} "
                     "(several hold integers); name it 'label'")
