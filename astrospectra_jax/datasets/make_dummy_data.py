"""Regenerate the builders' ``dummy_data/`` folders (tiny, deterministic, made-up spectra).

    python -m astrospectra_jax.datasets.make_dummy_data

- ``astrospectra_mnist/dummy_data/``: a Kaggle-layout tree with awkward CSVs: v1 has a
  pandas-style index column and headers ``Unnamed: 0,file_name,category``; v2 has no header
  and file names without ``.png``, and one PNG stored as RGB. Each split also holds a PNG
  that no CSV lists (ignored).
- ``line_astro_spectra/dummy_data/``: v1 as converter output (``LineAstroSpectra-v1/*.npz``),
  v2 as LAMOST DR8-layout FITS files in ``line_astro_spectra/v2/`` (20 F/G/K stars, one A
  star and one broken file, both skipped).

The spectra are smooth made-up curves, not simulator output, so that the dummy data does not
change when the simulator does.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
from astropy.io import fits
from PIL import Image

from astrospectra_jax.data import layout, recipe, sources, tasks

HERE = Path(__file__).resolve().parent
SIZES = {"train": 6, "test": 3}  # per task, Kaggle dummy
LINE_SIZES = {"train": 17, "test": 3}  # matches the FITS split: 20 spectra, 15% test
FITS_CLASSES = ["F5"] * 7 + ["G2"] * 7 + ["K3"] * 6
_TEMPERATURE = {"A": 9000.0, "F": 6800.0, "G": 5700.0, "K": 4500.0}


def _flux(wavelength, subclass: str, rng) -> np.ndarray:
    """A black-body slope with a few absorption dips and 2% noise (arbitrary units)."""
    lam = wavelength * 1e-10
    temperature = _TEMPERATURE[subclass[0]]
    planck = 1.0 / (lam ** 5 * (np.exp(1.4388e-2 / (lam * temperature)) - 1.0))
    flux = planck / planck.max() * 1000.0
    for centre, depth in ((3934.0, 0.4), (4861.0, 0.3), (5175.0, 0.2), (6563.0, 0.35)):
        flux *= 1.0 - depth * np.exp(-0.5 * ((wavelength - centre) / 8.0) ** 2)
    return flux * (1.0 + 0.02 * rng.standard_normal(wavelength.shape))


def _png(path: Path, image: np.ndarray, mode: str = "L") -> None:
    picture = Image.fromarray(image)
    (picture.convert(mode) if mode != "L" else picture).save(path, format="PNG")


def make_kaggle(root: Path, rng) -> None:
    for task in tasks.TASKS:
        folder = layout.kaggle_dir(root, task)
        for split, n in SIZES.items():
            images = layout.images_dir(folder, split, task)
            images.mkdir(parents=True)
            names = [f"{task}{split}{i:04d}" for i in range(n + 1)]  # the last one: unlisted
            labels = [1 + i % 3 for i in range(n)]
            for i, name in enumerate(names):
                grid = _flux(recipe.GRID, "AFGK"[i % 4], rng)
                _png(images / f"{name}.png", recipe.image(grid),
                     mode="RGB" if task == "v2" and i == 0 else "L")
            with layout.labels_csv(folder, split, task).open("w", newline="") as f:
                writer = csv.writer(f)
                if task == "v1":
                    writer.writerow(["Unnamed: 0", "file_name", "category"])
                    writer.writerows([i, f"{names[i]}.png", labels[i]] for i in range(n))
                else:
                    writer.writerows([names[i], labels[i]] for i in range(n))


def make_line_npz(root: Path, rng) -> None:
    task = "v1"
    splits = {}
    for split, n in LINE_SIZES.items():
        grid = np.stack([_flux(recipe.GRID, "AFGK"[i % 4], rng) for i in range(n)])
        ids = [f"line{task}{split}{i:04d}" for i in range(n)]
        splits[split] = [sources.examples_from_grid(ids, grid, [i % 3 for i in range(n)])]
    with tempfile.TemporaryDirectory() as tmp:
        layout.write_layout(tmp, task, splits, progress=False)
        shutil.copytree(layout.line_dir(tmp, task), layout.line_dir(root, task))


def make_fits(folder: Path, rng) -> None:
    """DR8 layout: primary HDU, rows flux, ivar, wavelength, and-mask, or-mask (300 pixels)."""
    folder.mkdir(parents=True)
    wavelength = np.geomspace(3690.0, 9100.0, 300)
    for i, subclass in enumerate(FITS_CLASSES + ["A0"]):
        flux = np.round(_flux(wavelength, subclass, rng), 2)
        ivar = np.full_like(wavelength, 0.01)
        ivar[rng.integers(0, wavelength.size, 5)] = 0.0  # a few bad pixels
        rows = np.stack([flux, ivar, wavelength, np.zeros_like(wavelength),
                         np.zeros_like(wavelength)]).astype(np.float32)
        header = fits.Header({"OBSID": 900000 + i, "CLASS": "STAR", "SUBCLASS": subclass,
                              "Z": 0.0, "SNRG": 50.0, "DATA_V": "dummy (made up)"})
        buffer = io.BytesIO()
        fits.PrimaryHDU(rows, header=header).writeto(buffer)
        (folder / f"spec-dummy-{i:03d}.fits.gz").write_bytes(
            gzip.compress(buffer.getvalue(), mtime=0))
    (folder / "spec-dummy-broken.fits").write_bytes(b"not a FITS file\n")


def main() -> None:
    rng = np.random.default_rng(0)
    image_root = HERE / "astrospectra_mnist" / "dummy_data"
    line_root = HERE / "line_astro_spectra" / "dummy_data"
    for root in (image_root, line_root):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
    make_kaggle(image_root, rng)
    make_line_npz(line_root, rng)
    make_fits(line_root / "line_astro_spectra" / "v2", rng)
    print(f"wrote {image_root} and {line_root}")


if __name__ == "__main__":
    main()
