"""Config errors, the one-line check of a choice field, and the checks that span fields.

Each field is checked where it is used (``choice``): the optimizer and schedule in
``steps.make_optimizer``, the dtype and kernels in ``state.build_model``, the pipeline in
``inputs.load``. ConfigDict enforces the types. ``validate`` keeps what no single use can see:
model against dataset modality, batch against device count, ``config.eval_datasets`` against
the dataset's classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import ml_collections

from astrospectra_jax import models
from astrospectra_jax.data import catalogue


class ConfigError(ValueError):
    """An invalid config; the message names each offending field."""


def choice(field: str, value: Any, choices: Iterable[str]) -> Any:
    """``value`` when it is one of ``choices``; else ConfigError naming the field and them."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"invalid config: config.{field}={value!r} must be one of "
                          f"{', '.join(map(str, choices))}")
    return value


def require(ok: bool, field: str, value: Any, requirement: str) -> None:
    """ConfigError ``config.<field>=<value> <requirement>`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"invalid config: config.{field}={value!r} {requirement}")


def positive(field: str, value: int) -> int:
    require(value > 0, field, value, "must be a positive integer")
    return value


def non_negative(field: str, value: int) -> int:
    require(value >= 0, field, value, "must be a non-negative integer")
    return value


def eval_dataset_names(config: ml_collections.ConfigDict) -> list[str]:
    """``config.eval_datasets`` ("name1,name2", registered names or folders) as a list."""
    return [name.strip() for name in str(config.get("eval_datasets") or "").split(",")
            if name.strip()]


def validate(config: ml_collections.ConfigDict) -> catalogue.DatasetSpec:
    """The checks spanning several fields, before anything is loaded; returns the dataset's spec.

    Raises ConfigError listing every problem, each naming its field.
    """
    require(config.dataset in catalogue.KNOWN_DATASETS, "dataset", config.dataset,
            f"is not a known dataset; known: {', '.join(catalogue.KNOWN_DATASETS)}")
    name, size = config.model.name, config.model.input_size
    require(name in models.MODEL_NAMES, "model.name", name,
            f"is not a known model; known: {', '.join(models.MODEL_NAMES)}")
    positive("batch_size", config.batch_size)
    for field, check in (("num_epochs", positive), ("max_steps", non_negative),
                         ("checkpoint_every_steps", positive), ("log_every_steps", positive),
                         ("eval_every_epochs", non_negative)):
        if config.get(field) is not None:  # checked again where used; here before any file
            check(field, config[field])
    spec = catalogue.info(config.dataset)
    problems = []
    if size not in models.input_sizes(name):
        problems.append(f"config.model.input_size={size!r} is not supported by model {name!r}; "
                        f"supported: {', '.join(map(str, models.input_sizes(name)))}")
    line_model = models.is_line_model(name)
    if line_model != (spec.modality == "line"):
        problems.append(f"config.model.name={name!r} is a{' line' if line_model else 'n image'} "
                        f"model but config.dataset={config.dataset!r} holds {spec.modality} data")
    if config.batch_size % jax.device_count():
        problems.append(f"config.batch_size={config.batch_size} must be divisible by the number "
                        f"of devices ({jax.device_count()})")
    for other in eval_dataset_names(config):
        if other in catalogue.KNOWN_DATASETS:
            info = catalogue.info(other)
            if (info.modality, info.class_names) != (spec.modality, spec.class_names):
                problems.append(
                    f"config.eval_datasets: {other!r} holds {info.modality} data of classes "
                    f"{', '.join(info.class_names)}; the model takes {spec.modality} data of "
                    f"classes {', '.join(spec.class_names)}")
        elif not Path(other).is_dir():
            problems.append(f"config.eval_datasets: {other!r} is neither a known dataset nor a "
                            "folder (of converted or FITS data)")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return spec
