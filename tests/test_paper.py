"""The paper's tables as carried in astrospectra_jax/paper_tables and the dataset -> column map."""

from __future__ import annotations

import csv

import pytest

from astrospectra_jax import paper

FAMILY_SIZES = {"DecisionTreeClassifier": 12, "ExtraTreeClassifier": 12, "GaussianNB": 1,
                "GradientBoostingClassifier": 4, "KNeighborsClassifier": 3, "LinearSVC": 9,
                "LogisticRegression": 1, "MLPClassifier": 8, "PassiveAggressiveClassifier": 3,
                "Perceptron": 3, "RandomForestClassifier": 18, "SGDClassifier": 15}


def test_table1_1_has_the_89_configurations_with_parsed_params():
    rows = paper.table1_1_classical()
    assert len(rows) == 89
    assert [r["row"] for r in rows] == list(range(89))
    for r in rows:
        assert set(r) == {"row", "classifier", "params", *paper.IMAGE_COLUMNS}
        assert isinstance(r["params"], dict) and r["params"]
        assert all(0.0 <= r[c] <= 1.0 for c in paper.IMAGE_COLUMNS)
    sizes = {}
    for r in rows:
        sizes[r["classifier"]] = sizes.get(r["classifier"], 0) + 1
    assert sizes == FAMILY_SIZES
    keys = [paper.params_key(r["classifier"], r["params"]) for r in rows]
    assert len(set(keys)) == 89
    assert rows[0] == {"row": 0, "classifier": "DecisionTreeClassifier",
                       "params": {"criterion": "entropy", "max_depth": 50, "splitter": "random"},
                       "astrospectra_mnist_v1": 0.778, "astrospectra_mnist_v2": 0.724,
                       "fashion_mnist": 0.794}
    gaussian = next(r for r in rows if r["classifier"] == "GaussianNB")
    assert gaussian["params"] == {"priors": "uniform"}
    assert rows[42]["params"]["hidden_layer_sizes"] == [10]


def test_loaders_return_copies():
    rows = paper.table1_1_classical()
    rows[0]["params"]["max_depth"] = -1
    assert paper.table1_1_classical()[0]["params"]["max_depth"] == 50


def test_table1_2_lists_the_same_configurations_in_the_same_order():
    t11, t12 = paper.table1_1_classical(), paper.table1_2_line_vs_images()
    assert len(t12) == 89
    assert [(r["classifier"], r["params"]) for r in t12] == \
        [(r["classifier"], r["params"]) for r in t11]
    for r in t12:
        assert set(r) == {"row", "classifier", "params", *paper.LINE_COLUMNS}
        assert all(0.0 <= r[c] <= 1.0 for c in paper.LINE_COLUMNS)
    # The image columns repeat Table 1-1, except one value as published.
    mismatches = {(a["row"], c) for a, b in zip(t11, t12)
                  for c in ("astrospectra_mnist_v1", "astrospectra_mnist_v2") if a[c] != b[c]}
    assert mismatches == {(76, "astrospectra_mnist_v1")}


def test_table2_has_the_eight_deep_models():
    table = paper.table2_deep()
    assert list(table) == ["SimpleCNN1", "SimpleCNN2", "AlexNet", "VGG16", "LeNet",
                           "GoogLeNet", "ResNet18", "MobileNetV2"]
    for row in table.values():
        assert set(row) == set(paper.IMAGE_COLUMNS)
        assert all(0.0 <= v <= 1.0 for v in row.values())
    assert table["ResNet18"]["astrospectra_mnist_v2"] == pytest.approx(0.842)


def test_carried_tables_match_the_published_files(paper_dir):
    for name in ("table1_1_classical.csv", "table1_2_line_vs_images.csv", "table2_deep.csv"):
        with open(paper_dir / name, newline="") as f:
            published = list(csv.reader(f))
        assert paper._read(name) == [dict(zip(published[0], row)) for row in published[1:]]


@pytest.mark.parametrize("dataset, column", [
    ("astrospectra_mnist/v1", "astrospectra_mnist_v1"),
    ("astrospectra_mnist/v2_synthetic", "astrospectra_mnist_v2"),
    ("astrospectra_mnist/v2_synthetic_mini", "astrospectra_mnist_v2"),
    ("line_astro_spectra/v1", "line_astro_spectra_v1"),
    ("line_astro_spectra/v2_synthetic", "line_astro_spectra_v2"),
    ("fashion_mnist", "fashion_mnist"),
])
def test_paper_column(dataset, column):
    assert paper.paper_column(dataset) == column


@pytest.mark.parametrize("dataset", ["mnist", "astrospectra_mnist/v3", "astrospectra_mnist"])
def test_unknown_dataset_has_no_column(dataset):
    with pytest.raises(ValueError, match="no paper column"):
        paper.paper_column(dataset)


def test_accuracy_lookups():
    key = paper.params_key("DecisionTreeClassifier",
                           {"splitter": "random", "max_depth": 50, "criterion": "entropy"})
    assert paper.classical_accuracy("astrospectra_mnist/v1_synthetic")[key] == 0.778
    assert paper.classical_accuracy("line_astro_spectra/v2")[key] == 0.649
    assert paper.line_image_accuracy("line_astro_spectra/v2")[key] == 0.724
    assert paper.image_dataset_for("line_astro_spectra/v1_synthetic") == \
        "astrospectra_mnist/v1_synthetic"
    with pytest.raises(ValueError):
        paper.image_dataset_for("astrospectra_mnist/v1")
    assert paper.deep_accuracy("resnet18", "astrospectra_mnist/v2_synthetic") == 0.842
    assert paper.deep_accuracy("MobileNetV2", "fashion_mnist") == 0.950
    assert paper.deep_accuracy("conv1d", "astrospectra_mnist/v1") is None
    assert paper.deep_accuracy("lenet", "line_astro_spectra/v1") is None
