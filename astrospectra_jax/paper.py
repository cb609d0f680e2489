"""The AstroSpectra-MNIST paper's published results, carried as CSV files in ``paper_tables/``.

- ``table2_deep()``: test accuracy of the eight CNNs (Table 2).
- ``table1_1_classical()``: the 89 scikit-learn configurations on the images (Table 1-1).
- ``table1_2_line_vs_images()``: the same 89 on the 721-value line vectors against the
  images of the same objects (Table 1-2).

``params_json`` is parsed into ``params`` (the estimator's keyword arguments as the paper
gives them; ``"priors": "uniform"`` means ``[1/k] * k``). Our dataset names map to the
paper's columns with ``paper_column``; ``_synthetic`` variants map to the same column, so
that simulated results are set beside the published ones (and are always labelled synthetic).
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import re
from importlib import resources

from astrospectra_jax.data import catalogue

IMAGE_COLUMNS = ("astrospectra_mnist_v1", "astrospectra_mnist_v2", "fashion_mnist")
LINE_COLUMNS = ("line_astro_spectra_v1", "astrospectra_mnist_v1",
                "line_astro_spectra_v2", "astrospectra_mnist_v2")

_BENCHMARK_NAME = re.compile(
    r"^(?P<builder>astrospectra_mnist|line_astro_spectra)/(?P<version>v1|v2)"
    r"(?P<synthetic>_synthetic(_mini)?)?$")

# The model registry's names (astrospectra_jax.models) -> Table 2's row names.
DEEP_MODEL_NAMES = {
    "simplecnn1": "SimpleCNN1", "simplecnn2": "SimpleCNN2", "lenet": "LeNet",
    "alexnet": "AlexNet", "vgg16": "VGG16", "googlenet": "GoogLeNet",
    "resnet18": "ResNet18", "mobilenetv2": "MobileNetV2",
}


def _read(name: str) -> list[dict[str, str]]:
    path = resources.files("astrospectra_jax") / "paper_tables" / name
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _accuracy(value: str, table: str, line: int, column: str) -> float:
    try:
        accuracy = float(value)
    except ValueError:
        raise ValueError(f"{table} line {line}: column {column!r} is not a number: {value!r}")
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"{table} line {line}: column {column!r} = {accuracy} is not in [0, 1]")
    return accuracy


def _classical_rows(name: str, columns: tuple[str, ...]) -> list[dict]:
    rows = []
    for index, raw in enumerate(_read(name)):
        line = index + 2  # 1-based, after the header
        try:
            params = json.loads(raw["params_json"])
        except json.JSONDecodeError as err:
            raise ValueError(f"{name} line {line}: params_json is not JSON: {err}") from err
        row = {"row": index, "classifier": raw["classifier"], "params": params}
        row.update({c: _accuracy(raw[c], name, line, c) for c in columns})
        rows.append(row)
    return rows


@functools.cache
def _table1_1() -> tuple[dict, ...]:
    return tuple(_classical_rows("table1_1_classical.csv", IMAGE_COLUMNS))


@functools.cache
def _table1_2() -> tuple[dict, ...]:
    return tuple(_classical_rows("table1_2_line_vs_images.csv", LINE_COLUMNS))


def table1_1_classical() -> list[dict]:
    """Table 1-1, in the paper's order: dicts with ``row`` (0-based), ``classifier``,
    ``params`` (dict) and one accuracy per column of ``IMAGE_COLUMNS``."""
    return copy.deepcopy(list(_table1_1()))


def table1_2_line_vs_images() -> list[dict]:
    """Table 1-2, in the paper's order: like Table 1-1 with the columns of ``LINE_COLUMNS``
    (line vectors and images of the same objects)."""
    return copy.deepcopy(list(_table1_2()))


def table2_deep() -> dict[str, dict[str, float]]:
    """Table 2: {model name as published: {column of ``IMAGE_COLUMNS``: accuracy}}."""
    name = "table2_deep.csv"
    return {raw["model"]: {c: _accuracy(raw[c], name, i + 2, c) for c in IMAGE_COLUMNS}
            for i, raw in enumerate(_read(name))}


def params_key(classifier: str, params: dict) -> str:
    """Canonical text of one configuration (classifier + sorted parameters)."""
    return classifier + json.dumps(params, sort_keys=True)


def _parse(dataset: str) -> re.Match | None:
    return _BENCHMARK_NAME.match(dataset)


def paper_column(dataset: str) -> str:
    """Our dataset name -> the paper's column: ``astrospectra_mnist/v2_synthetic`` ->
    ``astrospectra_mnist_v2``, ``line_astro_spectra/v1`` -> ``line_astro_spectra_v1``,
    ``fashion_mnist`` -> ``fashion_mnist``."""
    if dataset == "fashion_mnist":
        return "fashion_mnist"
    match = _parse(dataset)
    if match is None:
        raise ValueError(
            f"no paper column for dataset {dataset!r}; known: fashion_mnist and "
            "{astrospectra_mnist,line_astro_spectra}/{v1,v2}[_synthetic[_mini]]")
    return f"{match['builder']}_{match['version']}"


def image_dataset_for(line_dataset: str) -> str:
    """The image dataset of the same objects: ``line_astro_spectra/v1_synthetic`` ->
    ``astrospectra_mnist/v1_synthetic``."""
    if not catalogue.is_line_dataset(line_dataset):
        raise ValueError(f"{line_dataset!r} is not a line_astro_spectra dataset")
    return "astrospectra_mnist/" + line_dataset.split("/", 1)[1]


def classical_accuracy(dataset: str) -> dict[str, float]:
    """{``params_key``: the paper's accuracy} for ``dataset``: Table 1-1's column for the
    images and Fashion-MNIST, Table 1-2's line column for the line vectors."""
    column = paper_column(dataset)
    table = _table1_2() if catalogue.is_line_dataset(dataset) else _table1_1()
    return {params_key(r["classifier"], r["params"]): r[column] for r in table}


def line_image_accuracy(line_dataset: str) -> dict[str, float]:
    """{``params_key``: the paper's image accuracy on the same objects} from Table 1-2."""
    column = paper_column(image_dataset_for(line_dataset))
    return {params_key(r["classifier"], r["params"]): r[column] for r in _table1_2()}


def deep_accuracy(model: str, dataset: str) -> float | None:
    """Table 2's accuracy for a model of ``astrospectra_jax.models`` (e.g. ``resnet18``) or a
    published name (``ResNet18``); None for models the paper did not train (``conv1d``) and
    for the line datasets (Table 2 has images only)."""
    published = DEEP_MODEL_NAMES.get(model, model)
    column = paper_column(dataset)
    return table2_deep().get(published, {}).get(column)
