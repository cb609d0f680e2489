"""The AstroSpectra-MNIST folder layout on disk: where each file goes, writing it, reading it.

For task ``vN``::

    ROOT/AstroSpectra-MNIST/AstroSpectra-MNIST-vN/
        train_imagesvN/<id>.png        28x28 8-bit grayscale (PIL mode "L"), one per spectrum
        test_imagesvN/<id>.png
        train_labelsvN.csv             columns ``image,label``: PNG file name, label 1..3
        test_labelsvN.csv
    ROOT/LineAstroSpectra/LineAstroSpectra-vN/
        train_spectravN.npz            ``ids`` (N,) str, ``spectra`` (N, 721) float32,
        test_spectravN.npz             ``labels`` (N,) int32 1..3, ``wavelength`` (721,) float64

The Kaggle layout is the published one; its CSV column names are not documented, so ours
(``image,label``) are a choice, and the reader recognises columns by their values: the
file-name column holds names ending in ``.png`` (or names of files in the image folder, with
or without ``.png``), the label column integers 1..3 (or class names). A header row is
detected, not assumed. Errors name the file and the line. Labels are 1..3 in files and 0..2
in memory, indexing ``tasks.CLASS_NAMES[task]``; the same ``id`` names an object's PNG and
its line vector.

``write_layout`` writes into a hidden temporary folder inside ROOT and renames into place at
the end, so nothing half-written is left behind.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from etils import epath
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from astrospectra_jax.data import recipe, tasks

# Centre wavelength of each line-vector sample (the box filter is centred on GRID[::5]).
LINE_WAVELENGTH = recipe.GRID[::recipe.LINE_FILTER_WIDTH]


@dataclasses.dataclass(frozen=True)
class Examples:
    """Processed spectra: one row per object (labels 0-based)."""

    ids: np.ndarray  # (N,) str
    images: np.ndarray  # (N, 28, 28) uint8
    lines: np.ndarray  # (N, 721) float32
    labels: np.ndarray  # (N,) int32 in 0..2

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index) -> Examples:
        return Examples(self.ids[index], self.images[index], self.lines[index],
                        self.labels[index])



# ----------------------------------------------------------------------------- paths

# Strings become pathlib paths; path objects are kept (the builders pass etils.epath paths,
# which may point to cloud storage).
def _path(path):
    return Path(path) if isinstance(path, str) else path


def kaggle_dir(root, task: str) -> Path:
    return _path(root) / "AstroSpectra-MNIST" / f"AstroSpectra-MNIST-{task}"


def images_dir(kaggle_folder, split: str, task: str) -> Path:
    return _path(kaggle_folder) / f"{split}_images{task}"


def labels_csv(kaggle_folder, split: str, task: str) -> Path:
    return _path(kaggle_folder) / f"{split}_labels{task}.csv"


def line_dir(root, task: str) -> Path:
    return _path(root) / "LineAstroSpectra" / f"LineAstroSpectra-{task}"


def line_file(line_folder, split: str, task: str) -> Path:
    return _path(line_folder) / f"{split}_spectra{task}.npz"


def read_line_file(fileobj, *, name: str = "line file"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, spectra (N, 721) float32, labels (N,) int32 0-based) from a LineAstroSpectra npz.

    ``fileobj`` is a path or an open binary file.
    """
    with np.load(fileobj, allow_pickle=False) as data:
        missing = {"ids", "spectra", "labels"} - set(data.files)
        if missing:
            raise ValueError(f"{name}: missing arrays {sorted(missing)} (has {data.files})")
        ids = data["ids"].astype(str)
        lines = data["spectra"].astype(np.float32)
        labels = data["labels"]
    if lines.ndim != 2 or lines.shape[1] != recipe.LINE_SIZE:
        raise ValueError(f"{name}: spectra have shape {lines.shape}, "
                         f"expected (N, {recipe.LINE_SIZE})")
    if not (len(ids) == len(lines) == len(labels)):
        raise ValueError(f"{name}: {len(ids)} ids, {len(lines)} spectra, {len(labels)} labels")
    bad = np.flatnonzero(~np.isin(labels, (1, 2, 3)))
    if bad.size:
        raise ValueError(f"{name}: label {labels[bad[0]]!r} of {ids[bad[0]]} is not 1, 2 or 3")
    return ids, lines, labels.astype(np.int32) - 1


# ----------------------------------------------------------------------------- writing


def encode_png(image: np.ndarray) -> bytes:
    """A (28, 28) uint8 image as PNG bytes (8-bit grayscale)."""
    if image.dtype != np.uint8 or image.ndim != 2:
        raise ValueError(f"expected a 2-D uint8 image, got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_png(path: Path, image: np.ndarray) -> None:
    path.write_bytes(encode_png(image))


_TMP_PREFIX = ".convert-"


def remove_stale_temporaries(out: Path) -> list[Path]:
    """Remove the temporary folders that killed conversions (``kill -9``) left in ``out``:
    those whose process (the PID in the name) is gone. Returns the folders removed."""
    removed = []
    for folder in out.glob(f"{_TMP_PREFIX}*"):
        parts = folder.name.split("-")  # .convert-<task>-<pid>-<random>
        if len(parts) < 4 or not parts[2].isdigit() or _process_alive(int(parts[2])):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_layout(out, task: str, splits: Mapping[str, Iterable[Examples]], *,
                 sizes: Mapping[str, int] | None = None, overwrite: bool = False,
                 progress: bool = True) -> dict[str, int]:
    """Write the Kaggle layout and the line vectors of ``task`` under ``out``.

    ``splits`` maps split name to chunks of examples (consumed once). Written into a temporary
    folder in ``out`` and renamed into place at the end. Returns examples per split.
    """
    tasks.class_names(task)
    out = Path(out)
    targets = [kaggle_dir(out, task), line_dir(out, task)]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists (pass --overwrite to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{task}-{os.getpid()}-", dir=out))
    counts = {}
    try:
        kaggle_tmp, line_tmp = kaggle_dir(tmp, task), line_dir(tmp, task)
        line_tmp.mkdir(parents=True)
        for split, chunks in splits.items():
            png_dir = images_dir(kaggle_tmp, split, task)
            png_dir.mkdir(parents=True)
            rows, parts = [], []
            total = None if sizes is None else sizes.get(split)
            with tqdm(total=total, desc=f"writing {task} {split}", unit="img",
                      disable=not progress) as bar:
                for chunk in chunks:
                    for id_, image in zip(chunk.ids, chunk.images):
                        _write_png(png_dir / f"{id_}.png", image)
                    rows.extend((f"{id_}.png", int(label) + 1)
                                for id_, label in zip(chunk.ids, chunk.labels))
                    parts.append(chunk)
                    bar.update(len(chunk))
            with labels_csv(kaggle_tmp, split, task).open("w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["image", "label"])
                writer.writerows(rows)
            ids = np.concatenate([p.ids for p in parts]) if parts else np.zeros(0, str)
            if len(set(ids)) != len(ids):
                raise ValueError(f"{split}: ids are not unique")
            np.savez(line_file(line_tmp, split, task),
                     ids=ids.astype(str),
                     spectra=_concat([p.lines for p in parts], (0, recipe.LINE_SIZE), np.float32),
                     labels=_concat([p.labels for p in parts], (0,), np.int32) + 1,
                     wavelength=LINE_WAVELENGTH)
            counts[split] = len(rows)
        for src, dst in zip((kaggle_tmp, line_tmp), targets):
            dst.parent.mkdir(parents=True, exist_ok=True)
            if dst.exists():  # --overwrite: move the old one aside, then swap in the new one
                dst.rename(tmp / f"old-{dst.name}")
            src.rename(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts


def _concat(arrays, empty_shape, dtype) -> np.ndarray:
    return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(empty_shape, dtype)


# ----------------------------------------------------------------------------- reading the Kaggle layout

IMAGE_SHAPE = (recipe.IMAGE_SIDE, recipe.IMAGE_SIDE, 1)
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


def csv_rows(path) -> list[tuple[int, list[str]]]:
    """A CSV file's non-blank rows as (line number, stripped cells): what both label readers,
    ``read_labels`` (Kaggle CSVs) and ``sources.read_labels_csv`` (catalogues), read."""
    text = epath.Path(path).read_text()
    return [(number, [cell.strip() for cell in row])
            for number, row in enumerate(csv.reader(text.splitlines()), 1)
            if any(cell.strip() for cell in row)]


def check_width(where: str, row: list[str], needed: int, *, expected) -> None:
    """ValueError naming file and line (``where``) if ``row`` has fewer than ``needed`` cells."""
    if len(row) < needed:
        raise ValueError(f"{where}: {len(row)} columns, expected {expected}")


def read_labels(csv_path, images_dir, task: str) -> list[tuple[str, int]]:
    """[(PNG file name, 0-based label)] in CSV order; checks that every image exists."""
    csv_path, images_dir = epath.Path(csv_path), epath.Path(images_dir)
    names = tasks.class_names(task)
    rows = csv_rows(csv_path)
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
        needed = max(file_col, label_col) + 1
        check_width(where, row, needed, expected=f"at least {needed}")
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
