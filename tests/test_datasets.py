"""Dataset access (info, load_arrays), the builders' manual-data handling and their errors."""

from __future__ import annotations

import csv
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tensorflow_datasets as tfds

from astrospectra_jax.data import catalogue, layout, sources

REPO = Path(__file__).resolve().parents[1]
KAGGLE_DUMMY = REPO / "astrospectra_jax" / "datasets" / "astrospectra_mnist" / "dummy_data"
LINE_DUMMY = REPO / "astrospectra_jax" / "datasets" / "line_astro_spectra" / "dummy_data"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One TFDS data dir for the module, so a mini config is built once."""
    return str(tmp_path_factory.mktemp("tfds"))


def _manual(data_dir) -> Path:
    return Path(data_dir) / "downloads" / "manual"


def _kaggle_copy(tmp_path) -> Path:
    """A writable copy of the dummy Kaggle tree as the manual folder of a fresh data dir."""
    manual = _manual(tmp_path)
    shutil.copytree(KAGGLE_DUMMY, manual)
    return layout.kaggle_dir(manual, "v1")


# ----------------------------------------------------------------------------- info


def test_info_of_every_known_dataset():
    assert "astrospectra_mnist/v2_synthetic" in catalogue.KNOWN_DATASETS
    assert "fashion_mnist" in catalogue.KNOWN_DATASETS
    for name in catalogue.KNOWN_DATASETS:
        spec = catalogue.info(name)
        assert spec.name == name
        assert spec.num_classes == len(spec.class_names)
        assert spec.synthetic == ("_synthetic" in name)
        if name.startswith("line_astro_spectra"):
            assert (spec.modality, spec.feature_shape) == ("line", (721,))
        else:
            assert (spec.modality, spec.feature_shape) == ("image", (28, 28, 1))
    assert catalogue.info("astrospectra_mnist/v2").class_names == ("F", "G", "K")
    assert catalogue.info("line_astro_spectra/v1_synthetic").class_names == ("STAR", "GALAXY",
                                                                            "QSO")
    assert catalogue.info("fashion_mnist").num_classes == 10


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="astrospectra_mnist/v2_synthetic"):
        catalogue.info("astrospectra_mnist/v3")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        catalogue.load_arrays("mnist", "train")


# ----------------------------------------------------------------------------- synthetic


def test_load_arrays_builds_the_synthetic_mini_config(data_dir):
    images, labels = catalogue.load_arrays("astrospectra_mnist/v2_synthetic_mini", "test",
                                          data_dir=data_dir)
    assert images.shape == (300, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (300,) and labels.dtype == np.int32
    assert set(labels.tolist()) == {0, 1, 2}
    assert images.max() == 255 and images.min() == 0  # min-max scaled per spectrum
    train_images, train_labels = catalogue.load_arrays("astrospectra_mnist/v2_synthetic_mini",
                                                      "train", data_dir=data_dir)
    assert train_images.shape == (1200, 28, 28, 1) and len(train_labels) == 1200


def test_synthetic_builds_hold_what_the_converter_writes(data_dir):
    """Both builders and the converter share one code path: same ids, images, lines, labels."""
    chunks = list(sources.simulated_examples("v2", 300, 0, "test"))
    expected = {id_: (image, line, label) for chunk in chunks
                for id_, image, line, label in zip(chunk.ids, chunk.images, chunk.lines,
                                                   chunk.labels)}
    spectra_, labels = catalogue.load_arrays("line_astro_spectra/v2_synthetic_mini", "test",
                                            data_dir=data_dir)
    assert spectra_.shape == (300, 721) and spectra_.dtype == np.float32
    for name, feature in (("astrospectra_mnist", "image"), ("line_astro_spectra", "spectrum")):
        data = tfds.as_numpy(tfds.load(f"{name}/v2_synthetic_mini", split="test",
                                       data_dir=data_dir, batch_size=-1))
        assert len(data["id"]) == 300
        for id_, value, label in zip(data["id"], data[feature], data["label"]):
            image, line, expected_label = expected[id_.decode()]
            assert label == expected_label
            want = image[:, :, None] if feature == "image" else line
            np.testing.assert_array_equal(value, want)


# ----------------------------------------------------------------------------- real configs


@pytest.mark.parametrize("name,expected", [
    ("astrospectra_mnist/v2", ["kaggle.com/datasets/zzuygs/astrospectra-mnist-dataset",
                               "astrospectra-mnist-dataset.zip"]),
    ("line_astro_spectra/v1", ["FITS", "line_astro_spectra/v1"]),
])
def test_missing_manual_download_says_what_where_and_the_offline_config(tmp_path, name,
                                                                        expected):
    with pytest.raises(catalogue.DatasetNotFoundError) as err:
        catalogue.load_arrays(name, "test", data_dir=str(tmp_path))
    message = str(err.value)
    for text in expected + [str(_manual(tmp_path)), f"--config.dataset={name}_synthetic"]:
        assert text in message
    assert list(tmp_path.iterdir()) == []  # nothing prepared, nothing created


def test_builder_without_manual_folder_gives_the_instructions(tmp_path):
    builder = tfds.builder("astrospectra_mnist/v1", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        builder.download_and_prepare()
    assert "zzuygs/astrospectra-mnist-dataset" in str(err.value)
    assert str(_manual(tmp_path)) in str(err.value)
    assert not builder.is_prepared()


def test_real_config_from_the_kaggle_zip(tmp_path):
    manual = _manual(tmp_path)
    manual.mkdir(parents=True)
    with zipfile.ZipFile(manual / "astrospectra-mnist-dataset.zip", "w") as zf:
        for path in sorted(KAGGLE_DUMMY.rglob("*")):
            zf.write(path, Path("download") / path.relative_to(KAGGLE_DUMMY))
    images, labels = catalogue.load_arrays("astrospectra_mnist/v1", "train",
                                          data_dir=str(tmp_path))
    assert images.shape == (6, 28, 28, 1) and labels.tolist().count(0) == 2
    # Images are the PNGs as stored (one per listed row; the unlisted PNG is left out).
    folder = layout.images_dir(layout.kaggle_dir(KAGGLE_DUMMY, "v1"), "train", "v1")
    stored = {np.asarray(Image.open(p)).tobytes() for p in folder.glob("*.png")}
    assert {image[:, :, 0].tobytes() for image in images} <= stored


def test_line_config_from_converter_output_keeps_the_vectors(tmp_path):
    shutil.copytree(LINE_DUMMY, _manual(tmp_path))
    lines, labels = catalogue.load_arrays("line_astro_spectra/v1", "test", data_dir=str(tmp_path))
    ids, stored, stored_labels = layout.read_line_file(layout.line_file(
        layout.line_dir(LINE_DUMMY, "v1"), "test", "v1"))
    order = np.lexsort(lines.T)
    stored_order = np.lexsort(stored.T)
    np.testing.assert_array_equal(lines[order], stored[stored_order])
    np.testing.assert_array_equal(labels[order], stored_labels[stored_order])


def test_converter_output_serves_as_manual_data_for_both_builders(tmp_path):
    rng = np.random.default_rng(0)
    splits, expected = {}, {}
    for split, n in (("train", 12), ("test", 6)):
        flux = rng.uniform(1.0, 2.0, (n, 3601))
        splits[split] = [sources.examples_from_grid([f"{split}{i}" for i in range(n)], flux,
                                                    np.arange(n) % 3)]
        expected[split] = splits[split][0]
    layout.write_layout(_manual(tmp_path) / "converted", "v2", splits, progress=False)
    for name in ("astrospectra_mnist/v2", "line_astro_spectra/v2"):
        features, labels = catalogue.load_arrays(name, "test", data_dir=str(tmp_path))
        want = expected["test"]
        want = want.images[:, :, :, None] if name.startswith("astro") else want.lines
        order = np.lexsort(features.reshape(len(features), -1).T)
        want_order = np.lexsort(want.reshape(len(want), -1).T)
        np.testing.assert_array_equal(features[order], want[want_order])
        np.testing.assert_array_equal(labels[order], expected["test"].labels[want_order])


def test_failed_build_leaves_no_prepared_dataset(tmp_path):
    task_dir = _kaggle_copy(tmp_path)
    with open(task_dir / "test_labelsv1.csv", newline="") as f:
        names = [row[1] for row in csv.reader(f)][1:]
    bad = layout.images_dir(task_dir, "test", "v1") / names[-1]
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(bad)  # the last image of the last split
    builder = tfds.builder("astrospectra_mnist/v1", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=rf"{bad.name}: image is 32x32 pixels, expected 28x28"):
        builder.download_and_prepare()
    assert not builder.is_prepared()
    assert not tfds.builder("astrospectra_mnist/v1", data_dir=str(tmp_path)).is_prepared()
    built = tmp_path / "astrospectra_mnist" / "v1"
    assert not built.exists() or list(built.iterdir()) == []


# ----------------------------------------------------------------------------- Kaggle CSVs


def _layout(tmp_path, csv_text, n_images=3, size=28):
    images = tmp_path / "train_imagesv2"
    images.mkdir()
    for i in range(n_images):
        Image.fromarray(np.full((size, size), 10 * i, np.uint8)).save(images / f"{i:03d}.png")
    (tmp_path / "train_labelsv2.csv").write_text(csv_text)
    return tmp_path / "train_labelsv2.csv", images


@pytest.mark.parametrize("text", [
    "image,label\n000.png,1\n001.png,3\n002.png,2\n",              # plain
    "000.png,1\n001.png,3\n002.png,2\n",                           # no header
    ",fname,y\n0,000.png,1\n1,001.png,3\n2,002.png,2\n",           # pandas index column
    "id;x\n000,1\n001,3\n002,2\n".replace(";", ","),               # names without .png
    "label,path\n1,imgs/000.png\n3,imgs/001.png\n2,imgs/002.png\n",  # label first, folders
    "file,class\n000.png,F\n001.png,k\n002.png,G\n",               # class names
])
def test_csv_columns_are_recognised_by_their_values(tmp_path, text):
    csv_path, images = _layout(tmp_path, text)
    assert layout.read_labels(csv_path, images, "v2") == [
        ("000.png", 0), ("001.png", 2), ("002.png", 1)]


def test_csv_with_unknown_label_names_file_and_line(tmp_path):
    csv_path, images = _layout(tmp_path, "image,label\n000.png,1\n001.png,4\n002.png,2\n")
    with pytest.raises(ValueError, match=r"train_labelsv2.csv, line 3: unknown label '4'"):
        layout.read_labels(csv_path, images, "v2")
    csv_path.write_text("000.png,0\n001.png,1\n002.png,2\n")  # 0-based labels are not Kaggle's
    with pytest.raises(ValueError, match=r"line 1: unknown label '0'"):
        layout.read_labels(csv_path, images, "v2")


def test_csv_naming_a_missing_image(tmp_path):
    csv_path, images = _layout(tmp_path, "image,label\n000.png,1\n007.png,2\n", n_images=1)
    with pytest.raises(FileNotFoundError, match=r"line 3: image .*007.png not found"):
        layout.read_labels(csv_path, images, "v2")


def test_csv_without_a_file_column(tmp_path):
    csv_path, images = _layout(tmp_path, "a,b\nx,1\ny,2\n")
    with pytest.raises(ValueError, match="no column holds image file names"):
        layout.read_labels(csv_path, images, "v2")


def test_png_of_the_wrong_size_or_mode(tmp_path):
    _, images = _layout(tmp_path, "", n_images=1, size=32)
    with pytest.raises(ValueError, match=r"000.png: image is 32x32 pixels, expected 28x28"):
        layout.read_image(images / "000.png")
    Image.fromarray(np.zeros((28, 28), np.uint16)).save(images / "deep.png")
    with pytest.raises(ValueError, match=r"deep.png: image mode"):
        layout.read_image(images / "deep.png")
    (images / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"text.png: not a readable image"):
        layout.read_image(images / "text.png")
    Image.fromarray(np.full((28, 28, 3), 77, np.uint8)).save(images / "rgb.png")
    image = layout.read_image(images / "rgb.png")
    assert image.shape == (28, 28, 1) and image.dtype == np.uint8 and np.all(image == 77)
