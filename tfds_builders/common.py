"""What the two builders share: their configs (from the dataset catalogue) and descriptions.

Paths go through ``etils.epath`` (not ``os`` / ``open``) so that builds also work on cloud
file systems, as TFDS expects of builders.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds
from etils import epath

from astrospectra_jax.data import catalogue, tasks


@dataclasses.dataclass(eq=False)
class AstroSpectraConfig(tfds.core.BuilderConfig):
    """One task (v1 or v2), real (manual download) or simulated with fixed sizes and seed."""

    task: str = "v2"
    synthetic: bool = False
    num_train: int = 0  # synthetic configs only
    num_test: int = 0
    seed: int = tasks.SYNTHETIC_SEED

    @property
    def class_names(self) -> tuple[str, ...]:
        return tasks.CLASS_NAMES[self.task]


def make_configs(real_source: str) -> list[AstroSpectraConfig]:
    """The catalogue's configs: v1, v2 (real), v1_synthetic, v2_synthetic, *_synthetic_mini."""
    configs = []
    for spec in catalogue.CONFIGS:
        text = tasks.DESCRIPTIONS[spec.task]
        if spec.synthetic:
            description = (
                f"SIMULATED, NOT LAMOST DATA. {text}: {spec.num_train} train / {spec.num_test} "
                f"test spectra from the simulator (seed {spec.seed}; train and test from "
                "different seeds)."
                + (" Small, for tests and quick looks." if spec.name.endswith("_mini") else ""))
        else:
            description = f"{text}: {real_source}."
        configs.append(AstroSpectraConfig(
            name=spec.name, task=spec.task, synthetic=spec.synthetic, num_train=spec.num_train,
            num_test=spec.num_test, seed=spec.seed, description=description))
    return configs


def describe(base: str, config: AstroSpectraConfig) -> str:
    """The dataset description; synthetic configs open with a warning that cannot be missed."""
    if config.synthetic:
        return f"{catalogue.SYNTHETIC_WARNING}\n\n{config.description}\n\n{base}"
    return f"{config.description}\n\n{base}"


def manual_dir_of(dl_manager) -> epath.Path | None:
    """The download manager's manual folder, or None where it does not exist or is empty."""
    try:
        return dl_manager.manual_dir
    except AssertionError:  # TFDS: "Manual directory ... does not exist or is empty."
        return None
