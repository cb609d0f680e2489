"""The two classification tasks: the one place their names, classes and split sizes live.

v1 sorts spectra into STAR / GALAXY / QSO, v2 stars into F / G / K. The class order is the
label order of the Kaggle CSVs (1, 2, 3 in files; 0, 1, 2 in memory), and the simulator,
the layout, the TFDS builders and the reports all index these tuples.
"""

from __future__ import annotations

CLASS_NAMES = {"v1": ("STAR", "GALAXY", "QSO"), "v2": ("F", "G", "K")}
TASKS = tuple(CLASS_NAMES)
DESCRIPTIONS = {"v1": "STAR / GALAXY / QSO", "v2": "F / G / K stars"}
SPLITS = ("train", "test")
# (train, test): the paper's sizes, and the small *_synthetic_mini datasets'.
PAPER_SPLIT_SIZES = {"v1": (8000, 1000), "v2": (42454, 7546)}
MINI_SPLIT_SIZES = (1200, 300)
# A folder of labelled FITS files is split stratified, this share to test (seed 0 in the builder).
DEFAULT_TEST_FRACTION = 0.15
# Seed of the simulated datasets the TFDS builders make.
SYNTHETIC_SEED = 0


def class_names(task: str) -> tuple[str, ...]:
    """The classes of ``task``; ValueError naming the known tasks otherwise."""
    if task not in CLASS_NAMES:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    return CLASS_NAMES[task]


def class_of(task: str, obj_class: str | None, subclass: str | None) -> str | None:
    """The class a spectrum has for ``task``: v1 its CLASS, v2 its MK letter (None: unknown).

    The v2 letter is case-sensitive: LAMOST writes giants/dwarfs as ``gM0`` / ``dM2``, which
    are M stars, not G or D.
    """
    class_names(task)
    if task == "v1":
        return obj_class.upper() if obj_class else None
    if obj_class and obj_class.upper() != "STAR":
        return obj_class.upper()
    return subclass[0] if subclass else None


def class_from_text(task: str, text: str) -> str | None:
    """A catalogue's label: an integer 1..3, a class name, or (v2) an MK subclass like G5."""
    names = class_names(task)
    text = text.strip()
    if not text:
        return None
    if text.isdigit():
        return names[int(text) - 1] if 1 <= int(text) <= len(names) else f"label {text}"
    if task == "v1" or text.upper() in CLASS_NAMES["v1"]:
        return text.upper()
    return text[0]
