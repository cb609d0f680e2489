"""The converter: FITS folders and the simulator -> the Kaggle layout plus line vectors."""

from __future__ import annotations

import collections
import csv
import io
import os

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from astrospectra_jax import convert
from astrospectra_jax.data import lamost, layout, recipe, sources, tasks


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image", "label"]
    return [(name, int(label)) for name, label in rows[1:]]


def _manifest_letters(lamost_dir):
    with open(lamost_dir / "manifest.csv", newline="") as f:
        return collections.Counter(row["subclass"][0] for row in csv.DictReader(f))


def _check_layout(out, task, counts):
    """Files on disk agree with each other and with ``counts``; returns {split: (names, labels)}."""
    folder, lines = layout.kaggle_dir(out, task), layout.line_dir(out, task)
    assert sorted(os.listdir(folder)) == sorted(
        [f"train_images{task}", f"test_images{task}", f"train_labels{task}.csv",
         f"test_labels{task}.csv"])
    result = {}
    for split in ("train", "test"):
        rows = _read_csv(layout.labels_csv(folder, split, task))
        names = [name for name, _ in rows]
        labels = np.array([label for _, label in rows])
        assert len(rows) == counts[split]
        assert sorted(os.listdir(layout.images_dir(folder, split, task))) == sorted(names)
        assert set(labels) <= {1, 2, 3}
        image = Image.open(layout.images_dir(folder, split, task) / names[0])
        assert (image.mode, image.size) == ("L", (28, 28))
        ids, line_vectors, line_labels = layout.read_line_file(
            layout.line_file(lines, split, task))
        assert [f"{i}.png" for i in ids] == names
        assert line_vectors.shape == (counts[split], recipe.LINE_SIZE)
        np.testing.assert_array_equal(line_labels, labels - 1)
        result[split] = (names, labels)
    assert not set(result["train"][0]) & set(result["test"][0])
    return result


def test_fits_v2_layout_counts_stratification_and_skipped(lamost_dir, tmp_path):
    letters = _manifest_letters(lamost_dir)
    usable = {k: v for k, v in letters.items() if k in "FGK"}
    counts, skipped = sources.convert_fits(tmp_path, lamost_dir, "v2", test_fraction=0.15,
                                           seed=0, progress=False)
    assert counts["train"] + counts["test"] == sum(usable.values())
    assert abs(counts["test"] - 0.15 * sum(usable.values())) <= 1
    splits = _check_layout(tmp_path, "v2", counts)

    # Stratified: every class has its share of the test split (to within one spectrum).
    for label, letter in enumerate("FGK", start=1):
        n_test = int(np.sum(splits["test"][1] == label))
        n_train = int(np.sum(splits["train"][1] == label))
        assert n_train + n_test == usable[letter]
        assert abs(n_test - 0.15 * usable[letter]) <= 1

    # A and M stars are skipped and counted as such; nothing else is.
    others = {k: v for k, v in letters.items() if k not in "FGK"}
    assert set(others) >= {"A", "M"}
    assert skipped.count() == skipped.count(sources.SKIP_CLASS) == sum(others.values())
    assert collections.Counter(d for _, d in skipped.reasons[sources.SKIP_CLASS]) == others
    assert f"class not in task: {sum(others.values())} (A: {others['A']}, M: {others['M']})" \
        in skipped.summary()

    # The PNG is the recipe's image of the file's spectrum; the label is its MK letter.
    name, label = splits["train"][0][0], splits["train"][1][0]
    path = next(lamost_dir.rglob(name.replace(".png", ".fits*")))
    spectrum = lamost.read_spectrum(path)
    png = np.asarray(Image.open(layout.images_dir(layout.kaggle_dir(tmp_path, "v2"), "train",
                                                   "v2") / name))
    np.testing.assert_array_equal(png, recipe.image(spectrum.on_grid()))
    assert "FGK"[label - 1] == spectrum.subclass[0]


def test_fits_with_catalogue_overrides_headers(lamost_dir, tmp_path):
    paths = lamost.find_spectra(lamost_dir / "dr8")[:30]
    catalogue = tmp_path / "catalogue.csv"
    with open(catalogue, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "Label"])
        writer.writerows([p.name, 1 + i % 3] for i, p in enumerate(paths))
    counts, skipped = sources.convert_fits(tmp_path / "out", lamost_dir / "dr8", "v2",
                                           labels=catalogue, progress=False)
    assert counts["train"] + counts["test"] == 30
    assert skipped.count(sources.SKIP_NO_LABEL) == len(lamost.find_spectra(lamost_dir / "dr8")) - 30
    splits = _check_layout(tmp_path / "out", "v2", counts)
    expected = {p.name.split(".")[0]: 1 + i % 3 for i, p in enumerate(paths)}
    for names, labels in splits.values():
        for name, label in zip(names, labels):
            assert expected[name[:-4]] == label


def _write_fits(path, *, subclass="G2", good=True):
    wavelength = np.geomspace(3690.0, 9100.0, 400)
    flux = 1000.0 * np.exp(-((wavelength - 5500.0) / 3000.0) ** 2)
    ivar = np.full_like(wavelength, 0.01) if good else np.where(wavelength < 4500, 0.01, 0.0)
    rows = np.stack([flux, ivar, wavelength, 0 * flux, 0 * flux]).astype(np.float32)
    header = fits.Header({"CLASS": "STAR", **({"SUBCLASS": subclass} if subclass else {})})
    fits.PrimaryHDU(rows, header=header).writeto(path)


def test_unusable_files_are_skipped_with_reasons(tmp_path):
    _write_fits(tmp_path / "good-f.fits", subclass="F5")
    _write_fits(tmp_path / "giant-m.fits", subclass="gM3")  # an M giant, not a G star
    _write_fits(tmp_path / "no-subclass.fits", subclass=None)
    _write_fits(tmp_path / "bad-pixels.fits", good=False)
    (tmp_path / "sub").mkdir()
    _write_fits(tmp_path / "sub" / "good-f.fits", subclass="F5")  # same name again
    (tmp_path / "broken.fits").write_bytes(b"SIMPLE  = nonsense")
    examples, skipped, n_files = sources.read_fits_folder(tmp_path, "v2", progress=False)
    assert n_files == 6
    assert list(examples.ids) == ["good-f"] and list(examples.labels) == [0]
    assert {reason: len(items) for reason, items in skipped.reasons.items()} == {
        sources.SKIP_UNREADABLE: 1, sources.SKIP_BAD_PIXELS: 1, sources.SKIP_CLASS: 1,
        sources.SKIP_NO_LABEL: 1, sources.SKIP_DUPLICATE: 1}
    summary = skipped.summary(n_files)
    assert "broken.fits" in summary and "bad-pixels.fits" in summary and "(g: 1)" in summary


def test_class_of():
    assert tasks.class_of("v2", "STAR", "G5") == "G"
    assert tasks.class_of("v2", "STAR", "gM0") == "g"  # giants are written in lower case
    assert tasks.class_of("v2", "GALAXY", None) == "GALAXY"
    assert tasks.class_of("v1", "qso", None) == "QSO"
    assert tasks.class_of("v1", None, "G5") is None
    with pytest.raises(ValueError, match="v1, v2"):
        tasks.class_of("v3", "STAR", "G5")


def test_catalogue_needs_key_and_label_columns(tmp_path):
    bad = tmp_path / "cat.csv"
    bad.write_text("ra,dec\n1,2\n")
    with pytest.raises(ValueError, match="cat.csv.*key column"):
        sources.read_labels_csv(bad, "v2")
    good = tmp_path / "good.csv"
    good.write_text("obsid,subclass\n103232,K5\n5,3\n6,STAR\n")
    assert sources.read_labels_csv(good, "v2") == {"103232": "K", "5": "K", "6": "STAR"}


def test_synthetic_small_is_the_recipe_of_the_simulator(tmp_path):
    from astrospectra_jax.data import simulator

    assert convert.main(["synthetic", "--task", "v1", "--train", "40", "--test", "20",
                         "--seed", "3", "--out", str(tmp_path), "--no-progress"]) == 0
    splits = _check_layout(tmp_path, "v1", {"train": 40, "test": 20})
    for split, n in (("train", 40), ("test", 20)):
        sim = simulator.simulate("v1", n, sources.chunk_seed(3, split, 0))
        ids, lines, labels = layout.read_line_file(
            layout.line_file(layout.line_dir(tmp_path, "v1"), split, "v1"))
        np.testing.assert_array_equal(labels, sim.labels)
        np.testing.assert_allclose(lines, recipe.line_vector(sim.flux), rtol=1e-6)
        png = Image.open(layout.images_dir(layout.kaggle_dir(tmp_path, "v1"), split, "v1")
                         / splits[split][0][5])
        np.testing.assert_array_equal(np.asarray(png), recipe.image(sim.flux[5]))
    train_lines, test_lines = (
        layout.read_line_file(layout.line_file(layout.line_dir(tmp_path, "v1"), split, "v1"))[1]
        for split in ("train", "test"))
    assert not np.allclose(train_lines[:20], test_lines)  # different seeds per split


def test_chunk_seeds_differ():
    seeds = {sources.chunk_seed(s, split, c) for s in (0, 1) for split in tasks.SPLITS
             for c in range(3)}
    assert len(seeds) == 12


def test_stratified_split_is_seeded():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    a = sources.stratified_split(labels, 0.2, seed=0)
    b = sources.stratified_split(labels, 0.2, seed=0)
    c = sources.stratified_split(labels, 0.2, seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert np.bincount(labels[a[1]]).tolist() == [10, 6, 4]
    with pytest.raises(ValueError, match="per class"):
        sources.stratified_split(np.array([0, 0, 0, 1]), 0.5, seed=0)


def _splits(n_train, n_test):
    """Made-up examples for ``write_layout``: ids a0.. (train) and b0.. (test)."""
    def examples(n, prefix):
        flux = np.random.default_rng(n).uniform(1, 2, (n, recipe.GRID_SIZE))
        return sources.examples_from_grid([f"{prefix}{i}" for i in range(n)], flux,
                                          np.arange(n) % 3)
    return {"train": [examples(n_train, "a")], "test": [examples(n_test, "b")]}


def test_interrupted_conversion_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = layout._write_png

    def failing(path, image):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-way
        original(path, image)

    monkeypatch.setattr(layout, "_write_png", failing)
    with pytest.raises(KeyboardInterrupt):
        layout.write_layout(tmp_path, "v2", _splits(5, 5), progress=False)
    assert calls["n"] == 7
    assert os.listdir(tmp_path) == []  # neither output folder nor the temporary one


def test_existing_output_is_kept_unless_overwrite(tmp_path, monkeypatch):
    layout.write_layout(tmp_path, "v2", _splits(4, 2), progress=False)
    with pytest.raises(FileExistsError, match="--overwrite"):
        layout.write_layout(tmp_path, "v2", _splits(3, 3), progress=False)
    # A failing overwrite leaves the old output as it was.
    monkeypatch.setattr(layout, "_write_png", lambda path, image: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        layout.write_layout(tmp_path, "v2", _splits(3, 3), overwrite=True, progress=False)
    _check_layout(tmp_path, "v2", {"train": 4, "test": 2})
    monkeypatch.undo()
    layout.write_layout(tmp_path, "v2", _splits(3, 1), overwrite=True, progress=False)
    _check_layout(tmp_path, "v2", {"train": 3, "test": 1})
    assert sorted(os.listdir(tmp_path)) == ["AstroSpectra-MNIST", "LineAstroSpectra"]


def test_encode_png_round_trips():
    image = np.arange(784, dtype=np.uint8).reshape(28, 28)
    decoded = Image.open(io.BytesIO(layout.encode_png(image)))
    assert decoded.mode == "L"
    np.testing.assert_array_equal(np.asarray(decoded), image)


def test_simulation_does_not_depend_on_the_number_of_workers(monkeypatch):
    monkeypatch.setattr(sources, "SIMULATION_CHUNK", 40)  # 3 chunks of 40, 40, 20
    serial = list(sources.simulated_examples("v2", 100, 5, "test", workers=1))
    parallel = list(sources.simulated_examples("v2", 100, 5, "test", workers=2))
    assert [len(c) for c in parallel] == [40, 40, 20]
    for a, b in zip(serial, parallel):
        for field in ("ids", "images", "lines", "labels"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert parallel[-1].ids[-1] == "synthetic_v2_test_000099"


def test_command_line_errors_name_the_problem(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        convert.main(["fits", "--input", str(tmp_path / "nowhere"), "--task", "v2",
                      "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert.main(["synthetic", "--task", "v2", "--train", "0", "--out", str(tmp_path)])
    assert "--train and --test must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert.main(["synthetic", "--task", "v9", "--out", str(tmp_path)])
    assert "invalid choice: 'v9'" in capsys.readouterr().err
