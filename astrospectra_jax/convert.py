"""LAMOST FITS files or the simulator -> the AstroSpectra-MNIST folder layout.

Usage::

    python -m astrospectra_jax.convert synthetic --task v2 --train 42454 --test 7546 \\
        --seed 0 --out DIR
    python -m astrospectra_jax.convert fits --input FOLDER [--labels catalogue.csv] --task v2 \\
        --test-fraction 0.15 --seed 0 --out DIR

Both write, for task ``vN``::

    DIR/AstroSpectra-MNIST/AstroSpectra-MNIST-vN/
        train_imagesvN/<id>.png        28x28 8-bit grayscale (PIL mode "L"), one per spectrum
        test_imagesvN/<id>.png
        train_labelsvN.csv             columns ``image,label``: PNG file name, label 1..3
        test_labelsvN.csv
    DIR/LineAstroSpectra/LineAstroSpectra-vN/
        train_spectravN.npz            ``ids`` (N,) str, ``spectra`` (N, 721) float32,
        test_spectravN.npz             ``labels`` (N,) int32 1..3, ``wavelength`` (721,) float64

The Kaggle layout is the published one; its CSV column names are not documented, so ours
(``image,label``) are a choice, and readers must not rely on them. Labels are 1..3 in files
(the Kaggle convention) and 0..2 in memory, indexing ``CLASS_NAMES[task]``. The same ``id``
names an object's PNG and its line vector.

Labels of FITS files come from their headers (v1: ``CLASS`` STAR / GALAXY / QSO; v2: first
letter of ``SUBCLASS`` F / G / K for stars) or from a catalogue CSV. Files that cannot be used
are skipped and counted by reason; the train/test split is stratified and seeded.

Synthetic data: split ``train`` and ``test`` are simulated from different seeds, in chunks of
``SIMULATION_CHUNK`` spectra, each chunk with its own seed derived from (seed, split, chunk):
the TFDS builders' ``*_synthetic`` configs call the same ``simulated_examples`` and so hold
exactly what ``convert synthetic`` writes for the same sizes and seed.

Nothing half-written is left behind: everything is written into a hidden temporary folder
inside DIR and renamed into place at the end.
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import functools
import io
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from astrospectra_jax import lamost, spectra

# Label order of the Kaggle CSVs (1, 2, 3); the simulator uses the same order.
CLASS_NAMES = {"v1": ("STAR", "GALAXY", "QSO"), "v2": ("F", "G", "K")}
TASKS = tuple(CLASS_NAMES)
# The paper's split sizes (train, test).
PAPER_SPLIT_SIZES = {"v1": (8000, 1000), "v2": (42454, 7546)}
SPLITS = ("train", "test")
SIMULATION_CHUNK = 2000
# Default of `convert synthetic --workers` (each process peaks at ~1.3 GB for a 2000 chunk).
SIMULATION_WORKERS = max(1, min(4, os.cpu_count() or 1))
DEFAULT_TEST_FRACTION = 0.15
# Centre wavelength of each line-vector sample (the box filter is centred on GRID[::5]).
LINE_WAVELENGTH = spectra.GRID[::spectra.LINE_FILTER_WIDTH]

_FITS_SUFFIXES = (".fits.gz", ".fits")


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


@dataclasses.dataclass
class Skipped:
    """Files left out of a conversion, by reason (``reasons[reason] = [(file, detail)]``)."""

    reasons: dict[str, list[tuple[str, str]]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list))

    def add(self, reason: str, path, detail: str = "") -> None:
        self.reasons[reason].append((str(path), detail))

    def count(self, reason: str | None = None) -> int:
        if reason is None:
            return sum(len(v) for v in self.reasons.values())
        return len(self.reasons.get(reason, []))

    def summary(self, total: int | None = None) -> str:
        head = f"skipped {self.count()}" + (f" of {total} files" if total is not None else "")
        lines = [head + (":" if self.count() else "")]
        for reason, items in sorted(self.reasons.items()):
            details = collections.Counter(detail for _, detail in items)
            if reason == SKIP_CLASS:  # e.g. "(A: 41, M: 18)"
                extra = " (" + ", ".join(f"{k}: {v}" for k, v in sorted(details.items())) + ")"
            else:  # name a few files: these are worth looking at
                extra = "".join(f"\n    {p}: {d}" for p, d in items[:3])
                extra += f"\n    ... and {len(items) - 3} more" if len(items) > 3 else ""
            lines.append(f"  {reason}: {len(items)}{extra}")
        return "\n".join(lines)


SKIP_UNREADABLE = "unreadable file"
SKIP_BAD_PIXELS = "too few good pixels"
SKIP_CLASS = "class not in task"
SKIP_NO_LABEL = "no label"
SKIP_DUPLICATE = "duplicate file name"


# ----------------------------------------------------------------------------- layout


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
    if lines.ndim != 2 or lines.shape[1] != spectra.LINE_SIZE:
        raise ValueError(f"{name}: spectra have shape {lines.shape}, "
                         f"expected (N, {spectra.LINE_SIZE})")
    if not (len(ids) == len(lines) == len(labels)):
        raise ValueError(f"{name}: {len(ids)} ids, {len(lines)} spectra, {len(labels)} labels")
    bad = np.flatnonzero(~np.isin(labels, (1, 2, 3)))
    if bad.size:
        raise ValueError(f"{name}: label {labels[bad[0]]!r} of {ids[bad[0]]} is not 1, 2 or 3")
    return ids, lines, labels.astype(np.int32) - 1


# ----------------------------------------------------------------------------- labels


def _check_task(task: str) -> tuple[str, ...]:
    if task not in CLASS_NAMES:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return CLASS_NAMES[task]


def class_of(task: str, obj_class: str | None, subclass: str | None) -> str | None:
    """The class a spectrum has for ``task``: v1 its CLASS, v2 its MK letter (None: unknown).

    The v2 letter is case-sensitive: LAMOST writes giants/dwarfs as ``gM0`` / ``dM2``, which
    are M stars, not G or D.
    """
    _check_task(task)
    if task == "v1":
        return obj_class.upper() if obj_class else None
    if obj_class and obj_class.upper() != "STAR":
        return obj_class.upper()
    return subclass[0] if subclass else None


def class_from_text(task: str, text: str) -> str | None:
    """A catalogue's label: an integer 1..3, a class name, or (v2) an MK subclass like G5."""
    names = _check_task(task)
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return names[int(text) - 1] if 1 <= int(text) <= len(names) else f"label {text}"
    if task == "v1" or text.upper() in ("STAR", "GALAXY", "QSO"):
        return text.upper()
    return text[0]


_KEY_COLUMNS = ("obsid", "file", "filename", "fits", "path", "spectrum", "name", "id")
_LABEL_COLUMNS = ("label", "class", "subclass", "target", "type")


def read_catalogue(path, task: str) -> dict[str, str]:
    """Catalogue CSV -> {file stem or obsid: class}.

    The header must name a key column (one of obsid, file, filename, fits, path, spectrum,
    name, id) and a label column (label, class, subclass, target, type). Labels are 1..3,
    class names, or (v2) MK subclasses.
    """
    path = Path(path)
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        key_col = next((header.index(c) for c in _KEY_COLUMNS if c in header), None)
        label_col = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
        if key_col is None or label_col is None:
            raise ValueError(
                f"{path}: header {header} needs a key column (one of {', '.join(_KEY_COLUMNS)}) "
                f"and a label column (one of {', '.join(_LABEL_COLUMNS)})")
        catalogue = {}
        for line_number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) <= max(key_col, label_col):
                raise ValueError(f"{path}, line {line_number}: {len(row)} columns, "
                                 f"expected {len(header)}")
            catalogue[_stem(row[key_col].strip())] = class_from_text(task, row[label_col])
    return catalogue


def _stem(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in _FITS_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------- recipe


def examples_from_grid(ids, flux_on_grid, labels) -> Examples:
    """The recipe on a batch of grid spectra: images and line vectors."""
    flux_on_grid = np.asarray(flux_on_grid, dtype=np.float32)
    return Examples(ids=np.asarray(ids, dtype=str),
                    images=spectra.image(flux_on_grid),
                    lines=spectra.line_vector(flux_on_grid),
                    labels=np.asarray(labels, dtype=np.int32))


def chunk_seed(seed: int, split: str, chunk: int) -> int:
    """The simulator seed of one chunk: distinct for every (seed, split, chunk)."""
    return int(np.random.SeedSequence([seed, SPLITS.index(split), chunk]).generate_state(1)[0])


def simulated_examples(task: str, n: int, seed: int, split: str, *,
                       workers: int = 1) -> Iterator[Examples]:
    """``n`` simulated spectra for ``split`` through the recipe, in chunks.

    With ``workers`` > 1, chunks are simulated by that many spawned processes while the caller
    consumes earlier ones; they come back in order, so the output does not depend on the number
    of workers. Spawned processes import the caller's ``__main__``: scripts that use workers
    need an ``if __name__ == "__main__":`` guard, which is why the default is 1 (the TFDS
    builders simulate serially; the command line uses ``SIMULATION_WORKERS``).
    """
    _check_task(task)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    starts = range(0, n, SIMULATION_CHUNK)
    jobs = [(task, min(SIMULATION_CHUNK, n - start), chunk_seed(seed, split, chunk))
            for chunk, start in enumerate(starts)]
    for start, (_, size, _), examples in zip(starts, jobs, _run_chunks(jobs, workers)):
        ids = np.array([f"synthetic_{task}_{split}_{i:06d}" for i in range(start, start + size)])
        yield dataclasses.replace(examples, ids=ids)


def _run_chunks(jobs, workers: int) -> Iterator[Examples]:
    if workers <= 1 or len(jobs) <= 1:
        yield from (_simulate_chunk(*job) for job in jobs)
        return
    # Spawned, not forked: the parent may hold TensorFlow's threads.
    pool = ProcessPoolExecutor(min(workers, len(jobs)),
                               mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(_simulate_chunk, *job) for job in jobs]
        for future in futures:
            yield future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


# The image and the line builder of one config simulate the same chunks: keep the last few
# (~7 MB each after the recipe).
@functools.lru_cache(maxsize=8)
def _simulate_chunk(task: str, size: int, seed: int) -> Examples:
    from astrospectra_jax import synthetic  # only needed for synthetic data

    if tuple(synthetic.CLASS_NAMES[task]) != CLASS_NAMES[task]:
        raise RuntimeError(f"simulator classes {synthetic.CLASS_NAMES[task]} differ from "
                           f"the dataset's {CLASS_NAMES[task]}")
    sim = synthetic.simulate(task, size, seed)
    return examples_from_grid(np.full(size, ""), sim.flux, sim.labels)


def read_fits_folder(folder, task: str, *, catalogue: Mapping[str, str] | None = None,
                     progress: bool = True) -> tuple[Examples, Skipped, int]:
    """All usable LAMOST spectra of ``task`` under ``folder``: (examples, skipped, files seen)."""
    names = _check_task(task)
    paths = lamost.find_spectra(folder)
    if not paths:
        raise FileNotFoundError(f"{folder}: no *.fits or *.fits.gz files")
    skipped = Skipped()
    ids, images, lines, labels, first_seen = [], [], [], [], {}
    for path in tqdm(paths, desc=f"reading {task} FITS", unit="file", disable=not progress):
        stem = _stem(path.name)
        if stem in first_seen:
            skipped.add(SKIP_DUPLICATE, path, f"same name as {first_seen[stem]}")
            continue
        first_seen[stem] = path
        try:
            spectrum = lamost.read_spectrum(path)
        except (lamost.LamostReadError, OSError) as err:
            skipped.add(SKIP_UNREADABLE, path, str(err))
            continue
        if catalogue is None:
            cls = class_of(task, spectrum.obj_class, spectrum.subclass)
        else:
            cls = catalogue.get(stem, catalogue.get(spectrum.obsid or "", None))
        if cls is None:
            skipped.add(SKIP_NO_LABEL, path, "no CLASS/SUBCLASS in header" if catalogue is None
                        else "not in the catalogue")
            continue
        if cls not in names:
            skipped.add(SKIP_CLASS, path, cls)
            continue
        try:
            flux = spectrum.on_grid()
        except spectra.BadSpectrumError as err:
            skipped.add(SKIP_BAD_PIXELS, path, str(err))
            continue
        ids.append(stem)
        images.append(spectra.image(flux))  # keep the small products, not the 3601-point grid
        lines.append(spectra.line_vector(flux))
        labels.append(names.index(cls))
    side = spectra.IMAGE_SIDE
    examples = Examples(
        ids=np.asarray(ids, dtype=str),
        images=np.stack(images) if images else np.zeros((0, side, side), np.uint8),
        lines=np.stack(lines) if lines else np.zeros((0, spectra.LINE_SIZE), np.float32),
        labels=np.asarray(labels, dtype=np.int32))
    return examples, skipped, len(paths)


def stratified_split(labels, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): seeded, with the class proportions kept in both."""
    from sklearn.model_selection import train_test_split  # keeps `import astrospectra_jax` light

    labels = np.asarray(labels)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    try:
        train, test = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                       stratify=labels, random_state=seed)
    except ValueError as err:
        counts = dict(zip(*np.unique(labels, return_counts=True)))
        raise ValueError(f"cannot split {len(labels)} spectra (per class {counts}) with test "
                         f"fraction {test_fraction}: {err}") from err
    return np.sort(train), np.sort(test)


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


def write_layout(out, task: str, splits: Mapping[str, Iterable[Examples]], *,
                 sizes: Mapping[str, int] | None = None, overwrite: bool = False,
                 progress: bool = True) -> dict[str, int]:
    """Write the Kaggle layout and the line vectors of ``task`` under ``out``.

    ``splits`` maps split name to chunks of examples (consumed once). Written into a temporary
    folder in ``out`` and renamed into place at the end. Returns examples per split.
    """
    _check_task(task)
    out = Path(out)
    targets = [kaggle_dir(out, task), line_dir(out, task)]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists (pass --overwrite to replace it)")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".convert-{task}-", dir=out))
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
                     spectra=_concat([p.lines for p in parts], (0, spectra.LINE_SIZE), np.float32),
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


# ----------------------------------------------------------------------------- entry points


def convert_synthetic(out, task: str, n_train: int, n_test: int, seed: int = 0, *,
                      workers: int = 1, overwrite: bool = False,
                      progress: bool = True) -> dict[str, int]:
    """Simulated spectra -> layout under ``out``. Returns examples per split."""
    _check_task(task)
    if n_train < 1 or n_test < 1:
        raise ValueError(f"--train and --test must be positive, got {n_train} and {n_test}")
    splits = {"train": simulated_examples(task, n_train, seed, "train", workers=workers),
              "test": simulated_examples(task, n_test, seed, "test", workers=workers)}
    return write_layout(out, task, splits, sizes={"train": n_train, "test": n_test},
                        overwrite=overwrite, progress=progress)


def convert_fits(out, folder, task: str, *, test_fraction: float = DEFAULT_TEST_FRACTION,
                 seed: int = 0, labels=None, overwrite: bool = False,
                 progress: bool = True) -> tuple[dict[str, int], Skipped]:
    """LAMOST FITS files under ``folder`` -> layout under ``out``. Returns (counts, skipped)."""
    catalogue = None if labels is None else read_catalogue(labels, task)
    examples, skipped, n_files = read_fits_folder(folder, task, catalogue=catalogue,
                                                  progress=progress)
    print(f"{folder}: {len(examples)} of {n_files} files usable for {task}; "
          + skipped.summary(n_files), file=sys.stderr)
    if not len(examples):
        raise ValueError(f"{folder}: no usable spectra for task {task} "
                         f"(classes {', '.join(CLASS_NAMES[task])})")
    train, test = stratified_split(examples.labels, test_fraction, seed)
    splits = {"train": [examples.take(train)], "test": [examples.take(test)]}
    counts = write_layout(out, task, splits, sizes={"train": len(train), "test": len(test)},
                          overwrite=overwrite, progress=progress)
    return counts, skipped


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m astrospectra_jax.convert",
        description="Write the AstroSpectra-MNIST layout (PNGs, label CSVs, line vectors) "
                    "from LAMOST FITS files or from the simulator.")
    sub = parser.add_subparsers(dest="source", required=True)

    def common(p):
        p.add_argument("--task", choices=TASKS, required=True,
                       help="v1: STAR/GALAXY/QSO; v2: F/G/K stars")
        p.add_argument("--out", required=True, type=Path, help="output root folder")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--overwrite", action="store_true",
                       help="replace an existing AstroSpectra-MNIST-vN / LineAstroSpectra-vN")
        p.add_argument("--no-progress", action="store_true", help="no progress bars")

    syn = sub.add_parser("synthetic", help="simulated spectra (not LAMOST data)")
    common(syn)
    syn.add_argument("--train", type=int, help="train examples (default: the paper's size)")
    syn.add_argument("--test", type=int, help="test examples (default: the paper's size)")
    syn.add_argument("--workers", type=int, default=SIMULATION_WORKERS,
                     help="processes simulating in parallel (the output does not depend on it)")

    fit = sub.add_parser("fits", help="a folder of LAMOST FITS files (searched recursively)")
    common(fit)
    fit.add_argument("--input", required=True, type=Path, help="folder of *.fits / *.fits.gz")
    fit.add_argument("--labels", type=Path,
                     help="catalogue CSV (file name or obsid -> label); default: FITS headers")
    fit.add_argument("--test-fraction", type=float, default=DEFAULT_TEST_FRACTION)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    progress = not args.no_progress
    try:
        if args.source == "synthetic":
            paper_train, paper_test = PAPER_SPLIT_SIZES[args.task]
            counts = convert_synthetic(
                args.out, args.task, paper_train if args.train is None else args.train,
                paper_test if args.test is None else args.test, args.seed,
                workers=args.workers, overwrite=args.overwrite, progress=progress)
        else:
            counts, _ = convert_fits(args.out, args.input, args.task,
                                     test_fraction=args.test_fraction, seed=args.seed,
                                     labels=args.labels, overwrite=args.overwrite,
                                     progress=progress)
    except (ValueError, OSError) as err:  # bad input: one line naming the file or option
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print(f"wrote {kaggle_dir(args.out, args.task)} and {line_dir(args.out, args.task)}: "
          + ", ".join(f"{split} {n}" for split, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
