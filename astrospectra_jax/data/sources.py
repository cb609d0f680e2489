"""Where examples come from: a folder of FITS spectra (LAMOST or SDSS), or the simulator.

Labels of FITS files come from the survey's own record (v1: ``CLASS`` STAR / GALAXY / QSO; v2:
first letter of ``SUBCLASS`` F / G / K for stars) or from a labels CSV. Files that cannot be used
are skipped and counted by reason; the train/test split is stratified and seeded.

Synthetic data: split ``train`` and ``test`` are simulated from different seeds, in chunks of
``SIMULATION_CHUNK`` spectra, each chunk with its own seed derived from (seed, split, chunk):
the TFDS builders' ``*_synthetic`` configs call the same ``simulated_examples`` and so hold
exactly what ``convert synthetic`` writes for the same sizes and seed.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import multiprocessing
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from astrospectra_jax import interrupts
from astrospectra_jax.data import layout, readers, recipe, tasks
from astrospectra_jax.data.layout import Examples
from astrospectra_jax.data.tasks import DEFAULT_TEST_FRACTION

SIMULATION_CHUNK = 2000
# Default of `convert synthetic --workers` (each process peaks at ~1.3 GB for a 2000 chunk).
SIMULATION_WORKERS = max(1, min(4, os.cpu_count() or 1))

_FITS_SUFFIXES = (".fits.gz", ".fits")


@dataclasses.dataclass
class Skipped:
    """Files left out of a conversion, by reason (``reasons[reason] = [(file, detail)]``)."""

    reasons: dict[str, list[tuple[str, str]]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list))

    def add(self, reason: str, path, detail: str = "") -> None:
        """``detail`` without a leading "<path>: " (read errors name their file; the listing
        names it once)."""
        self.reasons[reason].append((str(path), detail.removeprefix(f"{path}: ")))

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


_KEY_COLUMNS = ("obsid", "file", "filename", "fits", "path", "spectrum", "name", "id")
_LABEL_COLUMNS = ("label", "class", "subclass", "target", "type")


def read_labels_csv(path, task: str) -> dict[str, str]:
    """Catalogue CSV -> {file stem or obsid: class}.

    The header must name a key column (one of obsid, file, filename, fits, path, spectrum,
    name, id) and a label column (label, class, subclass, target, type). Labels are 1..3,
    class names, or (v2) MK subclasses.
    """
    rows = layout.csv_rows(path)
    header = [h.lower() for h in rows[0][1]] if rows else []
    key_col = next((header.index(c) for c in _KEY_COLUMNS if c in header), None)
    label_col = next((header.index(c) for c in _LABEL_COLUMNS if c in header), None)
    if key_col is None or label_col is None:
        raise ValueError(
            f"{path}: header {header} needs a key column (one of {', '.join(_KEY_COLUMNS)}) "
            f"and a label column (one of {', '.join(_LABEL_COLUMNS)})")
    labels_by_name = {}
    for line_number, row in rows[1:]:
        layout.check_width(f"{path}, line {line_number}", row, max(key_col, label_col) + 1,
                           expected=len(header))
        labels_by_name[_stem(row[key_col])] = tasks.class_from_text(task, row[label_col])
    return labels_by_name


def _stem(name: str) -> str:
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in _FITS_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


# ----------------------------------------------------------------------------- examples


def examples_from_grid(ids, flux_on_grid, labels) -> Examples:
    """The recipe on a batch of grid spectra: images and line vectors."""
    flux_on_grid = np.asarray(flux_on_grid, dtype=np.float32)
    return Examples(ids=np.asarray(ids, dtype=str),
                    images=recipe.image(flux_on_grid),
                    lines=recipe.line_vector(flux_on_grid),
                    labels=np.asarray(labels, dtype=np.int32))


def chunk_seed(seed: int, split: str, chunk: int) -> int:
    """The simulator seed of one chunk: distinct for every (seed, split, chunk)."""
    return int(np.random.SeedSequence([seed, tasks.SPLITS.index(split), chunk]).generate_state(1)[0])


def simulated_examples(task: str, n: int, seed: int, split: str, *,
                       workers: int = 1) -> Iterator[Examples]:
    """``n`` simulated spectra for ``split`` through the recipe, in chunks.

    With ``workers`` > 1, chunks are simulated by that many spawned processes while the caller
    consumes earlier ones; they come back in order, so the output does not depend on the number
    of workers. Spawned processes import the caller's ``__main__``: scripts that use workers
    need an ``if __name__ == "__main__":`` guard, which is why the default is 1 (the TFDS
    builders simulate serially; the command line uses ``SIMULATION_WORKERS``).
    """
    tasks.class_names(task)
    if split not in tasks.SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {tasks.SPLITS}")
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
    # Spawned, not forked: the parent may hold TensorFlow's threads. Workers ignore SIGINT
    # (Ctrl-C reaches the whole process group): the parent alone decides, and stops them.
    pool = ProcessPoolExecutor(min(workers, len(jobs)),
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=interrupts.ignore_sigint)
    finished = False
    try:
        with interrupts.sigint_ignored():  # inherited by the workers from their first instruction
            futures = [pool.submit(_simulate_chunk, *job) for job in jobs]
        for future in futures:
            yield future.result()
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:  # interrupted, failed or abandoned: waiting on the workers could hang
            stop_pool(pool)


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Terminate a process pool's workers now and shut it down without waiting on them."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
    # The pool's manager thread sees the dead workers and closes its wake-up pipe. Left to
    # do that while the interpreter exits, it races concurrent.futures' exit hook, which then
    # writes to the closed pipe ("Exception ignored ... OSError: [Errno 9] Bad file
    # descriptor"): wait for it here.
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None and manager.is_alive():
        manager.join(timeout=10)


# The image and the line builder of one config simulate the same chunks: keep the last few
# (~7 MB each after the recipe).
@functools.lru_cache(maxsize=8)
def _simulate_chunk(task: str, size: int, seed: int) -> Examples:
    from astrospectra_jax.data import simulator  # only needed for synthetic data

    sim = simulator.simulate(task, size, seed)
    return examples_from_grid(np.full(size, ""), sim.flux, sim.labels)


def read_fits_folder(folder, task: str, *, labels_by_name: Mapping[str, str] | None = None,
                     progress: bool = True) -> tuple[Examples, Skipped, int]:
    """All usable spectra of ``task`` under ``folder`` (LAMOST or SDSS FITS, told apart by
    content): (examples, skipped, files seen)."""
    names = tasks.class_names(task)
    paths = readers.find_spectra(folder)
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
            spectrum = readers.read_spectrum(path)
        except (readers.SpectrumReadError, OSError) as err:
            skipped.add(SKIP_UNREADABLE, path, str(err))
            continue
        if labels_by_name is None:
            cls = tasks.class_of(task, spectrum.obj_class, spectrum.subclass)
        else:
            cls = labels_by_name.get(stem, labels_by_name.get(spectrum.obsid or "", None))
        if cls is None:
            skipped.add(SKIP_NO_LABEL, path, "no CLASS/SUBCLASS in header" if labels_by_name is None
                        else "not in the labels CSV")
            continue
        if cls not in names:
            skipped.add(SKIP_CLASS, path, cls)
            continue
        try:
            flux = spectrum.on_grid()
        except recipe.BadSpectrumError as err:
            skipped.add(SKIP_BAD_PIXELS, path, str(err))
            continue
        ids.append(stem)
        images.append(recipe.image(flux))  # keep the small products, not the 3601-point grid
        lines.append(recipe.line_vector(flux))
        labels.append(names.index(cls))
    side = recipe.IMAGE_SIDE
    examples = Examples(
        ids=np.asarray(ids, dtype=str),
        images=np.stack(images) if images else np.zeros((0, side, side), np.uint8),
        lines=np.stack(lines) if lines else np.zeros((0, recipe.LINE_SIZE), np.float32),
        labels=np.asarray(labels, dtype=np.int32))
    return examples, skipped, len(paths)


def stratified_split(labels, test_fraction: float, seed: int,
                     class_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): seeded, with the class proportions kept in both. ``class_names``
    (indexed by label) name the classes in the error of a split that cannot be made."""
    from sklearn.model_selection import train_test_split  # keeps `import astrospectra_jax` light

    labels = np.asarray(labels)
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    try:
        train, test = train_test_split(np.arange(len(labels)), test_size=test_fraction,
                                       stratify=labels, random_state=seed)
    except ValueError as err:
        values, counts = np.unique(labels, return_counts=True)
        per_class = ", ".join(
            f"{class_names[int(v)] if class_names is not None else int(v)}: {int(n)}"
            for v, n in zip(values, counts))
        raise ValueError(f"cannot split {len(labels)} spectra (per class {per_class}) with test "
                         f"fraction {test_fraction}: {err}") from err
    return np.sort(train), np.sort(test)


def convert_synthetic(out, task: str, n_train: int, n_test: int, seed: int = 0, *,
                      workers: int = 1, overwrite: bool = False,
                      progress: bool = True) -> dict[str, int]:
    """Simulated spectra -> layout under ``out``. Returns examples per split."""
    tasks.class_names(task)
    if n_train < 1 or n_test < 1:
        raise ValueError(f"--train and --test must be positive, got {n_train} and {n_test}")
    splits = {"train": simulated_examples(task, n_train, seed, "train", workers=workers),
              "test": simulated_examples(task, n_test, seed, "test", workers=workers)}
    return layout.write_layout(out, task, splits, sizes={"train": n_train, "test": n_test},
                        overwrite=overwrite, progress=progress)


def convert_fits(out, folder, task: str, *, test_fraction: float = DEFAULT_TEST_FRACTION,
                 seed: int = 0, labels=None, overwrite: bool = False,
                 progress: bool = True) -> tuple[dict[str, int], Skipped]:
    """LAMOST or SDSS FITS files under ``folder`` -> layout under ``out``: (counts, skipped)."""
    labels_by_name = None if labels is None else read_labels_csv(labels, task)
    examples, skipped, n_files = read_fits_folder(folder, task, labels_by_name=labels_by_name,
                                                  progress=progress)
    print(f"{folder}: {len(examples)} of {n_files} files usable for {task}; "
          + skipped.summary(n_files), file=sys.stderr)
    if not len(examples):
        raise ValueError(f"{folder}: no usable spectra for task {task} "
                         f"(classes {', '.join(tasks.CLASS_NAMES[task])})")
    train, test = stratified_split(examples.labels, test_fraction, seed,
                                   tasks.class_names(task))
    splits = {"train": [examples.take(train)], "test": [examples.take(test)]}
    counts = layout.write_layout(out, task, splits, sizes={"train": len(train), "test": len(test)},
                          overwrite=overwrite, progress=progress)
    return counts, skipped


