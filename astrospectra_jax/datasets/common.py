"""What the two builders share: their configs (from the dataset catalogue) and descriptions.

Paths go through ``etils.epath`` (not ``os`` / ``open``) so that builds also work on cloud
file systems, as TFDS expects of builders.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds
from etils import epath

from astrospectra_jax.data import catalogue, tasks

# Both builders make their synthetic configs from the same simulator: one version for both.
VERSION = tfds.core.Version("1.3.0")
RELEASE_NOTES = {
    "1.0.0": "Initial release.",
    "1.1.0": "Synthetic configs: new simulator content (extra quasar dust only for a "
             "reddened minority; stronger H-alpha and Ca I 4227 in F-K stars; a deeper "
             "blue-edge calibration droop; 40% of spectra end in exact zeros as DR8/DR10 "
             "files do). Sizes and names unchanged. Real-data configs unchanged.",
    "1.2.0": "Synthetic configs: TiO bands shallower in K7-M1 stars (real TiO5 indices).",
    "1.3.0": "Synthetic configs: instrument and calibration nuisances drawn from the wider, "
             "documented ranges of simulator.NuisanceRanges (flux-calibration tilt, blue-edge "
             "droop, arm join, extra blur, S/N, sky residuals, line-strength scatter); v2 "
             "labels still by type temperature (survey-like template-matched labels exist "
             "as an option, not the default). Sizes and names unchanged. Real-data configs "
             "unchanged.",
}


@dataclasses.dataclass(eq=False)
class AstroSpectraConfig(tfds.core.BuilderConfig):
    """A config of the dataset catalogue as TFDS sees it: a task, real (manual download) or
    simulated with fixed sizes and seed."""

    spec: catalogue.ConfigSpec | None = None

    task = property(lambda self: self.spec.task)
    synthetic = property(lambda self: self.spec.synthetic)
    num_train = property(lambda self: self.spec.num_train)
    num_test = property(lambda self: self.spec.num_test)
    seed = property(lambda self: self.spec.seed)
    class_names = property(lambda self: self.spec.class_names)


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
        configs.append(AstroSpectraConfig(name=spec.name, spec=spec, description=description))
    return configs


def describe(base: str, config: AstroSpectraConfig) -> str:
    """The dataset description; synthetic configs open with a warning that cannot be missed."""
    if config.synthetic:
        return f"{catalogue.SYNTHETIC_WARNING}\n\n{config.description}\n\n{base}"
    return f"{config.description}\n\n{base}"


def synthetic_mini_test(builder_cls) -> type:
    """TFDS's own builder checks on the ``*_synthetic_mini`` configs of ``builder_cls``: a test
    class for the builder's ``*_test.py`` (``tfds.testing`` loads on this call only)."""
    return type("SyntheticMiniConfigsTest", (tfds.testing.DatasetBuilderTestCase,), {
        "DATASET_CLASS": builder_cls,
        "BUILDER_CONFIG_NAMES_TO_TEST": [spec.name for spec in catalogue.CONFIGS
                                         if spec.name.endswith("_mini")],
        "SPLITS": dict(zip(tasks.SPLITS, tasks.MINI_SPLIT_SIZES)),
    })


def manual_instructions(builder: str) -> str:
    """A builder's ``MANUAL_DOWNLOAD_INSTRUCTIONS``: the catalogue's text, then the offline way."""
    return (f"Configs v1 and v2 are real LAMOST data, a manual download.\n"
            f"{catalogue.manual_download(builder)}"
            f"Offline, use the simulated configs {builder}/v1_synthetic or v2_synthetic "
            "(not LAMOST data).\n")


def dataset_info(builder: tfds.core.DatasetBuilder, base: str, feature,
                 citation: str | None = None) -> tfds.core.DatasetInfo:
    """A builder's ``_info``: ``feature`` (under the catalogue's name for it), label and id."""
    config = builder.builder_config
    name = catalogue.FEATURE[catalogue.MODALITY[builder.name]]
    return tfds.core.DatasetInfo(
        builder=builder,
        description=describe(base, config),
        features=tfds.features.FeaturesDict({
            name: feature,
            "label": tfds.features.ClassLabel(names=config.class_names),
            "id": tfds.features.Text(),
        }),
        supervised_keys=(name, "label"),
        homepage=catalogue.KAGGLE_URL,
        citation=citation,
    )


def synthetic_splits(generate_examples, config: AstroSpectraConfig) -> dict:
    """The split generators of a synthetic config: ``generate_examples(split, num=size)``."""
    return {"train": generate_examples("train", num=config.num_train),
            "test": generate_examples("test", num=config.num_test)}


def manual_dir_of(dl_manager) -> epath.Path | None:
    """The download manager's manual folder, or None where it does not exist or is empty."""
    try:
        return dl_manager.manual_dir
    except AssertionError:  # TFDS: "Manual directory ... does not exist or is empty."
        return None
