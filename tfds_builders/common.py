"""What the two builders share: their configs, the synthetic description, finding manual data.

Paths go through ``etils.epath`` (not ``os`` / ``open``) so that builds also work on cloud
file systems, as TFDS expects of builders.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from etils import epath
import tensorflow_datasets as tfds

from astrospectra_jax import convert

MINI_SIZES = (1200, 300)  # (train, test) of the *_synthetic_mini configs
SYNTHETIC_SEED = 0

KAGGLE_DATASET = "zzuygs/astrospectra-mnist-dataset"
KAGGLE_URL = "https://www.kaggle.com/datasets/zzuygs/astrospectra-mnist-dataset"
KAGGLE_ZIP = "astrospectra-mnist-dataset.zip"
DEFAULT_MANUAL_DIR = "~/tensorflow_datasets/downloads/manual/"

SYNTHETIC_WARNING = (
    "SIMULATED DATA, NOT LAMOST OBSERVATIONS: every spectrum of this config comes from the "
    "project's offline simulator (astrospectra_jax.synthetic) and went through the same "
    "recipe as real spectra. Results on it say nothing about the real benchmark; report them "
    "as synthetic.")


@dataclasses.dataclass(eq=False)
class AstroSpectraConfig(tfds.core.BuilderConfig):
    """One task (v1 or v2), real (manual download) or simulated with fixed sizes and seed."""

    task: str = "v2"
    synthetic: bool = False
    num_train: int = 0  # synthetic configs only
    num_test: int = 0
    seed: int = SYNTHETIC_SEED

    @property
    def class_names(self) -> tuple[str, ...]:
        return convert.CLASS_NAMES[self.task]


_TASK_TEXT = {"v1": "STAR / GALAXY / QSO", "v2": "F / G / K stars"}


def make_configs(real_source: str) -> list[AstroSpectraConfig]:
    """v1, v2 (real), v1_synthetic, v2_synthetic (paper sizes), *_synthetic_mini."""
    configs = [AstroSpectraConfig(name=task, task=task,
                                  description=f"{_TASK_TEXT[task]}: {real_source}.")
               for task in convert.TASKS]
    for suffix, sizes in (("", None), ("_mini", MINI_SIZES)):
        for task in convert.TASKS:
            n_train, n_test = sizes or convert.PAPER_SPLIT_SIZES[task]
            configs.append(AstroSpectraConfig(
                name=f"{task}_synthetic{suffix}", task=task, synthetic=True,
                num_train=n_train, num_test=n_test,
                description=(f"SIMULATED, NOT LAMOST DATA. {_TASK_TEXT[task]}: {n_train} train / "
                             f"{n_test} test spectra from the simulator (seed {SYNTHETIC_SEED}; "
                             "train and test from different seeds)."
                             + (" Small, for tests and quick looks." if suffix else ""))))
    return configs


def describe(base: str, config: AstroSpectraConfig) -> str:
    """The dataset description; synthetic configs open with a warning that cannot be missed."""
    if config.synthetic:
        return f"{SYNTHETIC_WARNING}\n\n{config.description}\n\n{base}"
    return f"{config.description}\n\n{base}"


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


def manual_dir_of(dl_manager) -> epath.Path | None:
    """The download manager's manual folder, or None where it does not exist or is empty."""
    try:
        return dl_manager.manual_dir
    except AssertionError:  # TFDS: "Manual directory ... does not exist or is empty."
        return None
