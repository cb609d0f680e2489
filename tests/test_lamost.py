"""The LAMOST reader on every real file in ../shared/data/lamost, and on damaged copies."""

import csv
import dataclasses
import gzip
import math
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astrospectra_jax.data import lamost, recipe

LAYOUT_OF_FOLDER = {"dr1": "DR1", "dr8": "DR8", "dr10": "DR10"}


@pytest.fixture(scope="module")
def manifest(lamost_dir):
    with open(lamost_dir / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sample(lamost_dir):
    """One real file per layout."""
    return {folder: sorted((lamost_dir / folder).glob("*.fits*"))[0]
            for folder in LAYOUT_OF_FOLDER}


def close(a, b):
    return a is not None and math.isclose(a, float(b), rel_tol=1e-6, abs_tol=1e-12)


def test_find_spectra_lists_exactly_the_manifest(lamost_dir, manifest):
    found = lamost.find_spectra(lamost_dir)
    assert [p.relative_to(lamost_dir).as_posix() for p in found] == sorted(
        row["path"] for row in manifest)


def test_every_real_file_reads_like_the_manifest(lamost_dir, manifest):
    problems = []
    for row in manifest:
        path = lamost_dir / row["path"]
        s = lamost.read_spectrum(path)
        wl = s.wavelength
        expected_layout = LAYOUT_OF_FOLDER[row["path"].split("/")[0]]
        checks = {
            "path": s.path == str(path),
            "layout": s.data_release == expected_layout,
            "class": s.obj_class == row["class"],
            "subclass": s.subclass == row["subclass"] and s.subclass[0] in "AFGKM",
            "z": close(s.redshift, row["z"]),
            "snr_g": close(s.snr_g, row["snr_g"]),
            "npix": all(a.shape == (int(row["npix"]),)
                        for a in (wl, s.flux, s.ivar, s.andmask, s.ormask)),
            "obsid": (s.obsid is None) == (expected_layout == "DR1"),
            "wavelength": bool(np.all(np.diff(wl) > 0)) and 3600 < wl[0] and wl[-1] < 9200,
        }
        grid = s.on_grid()
        checks["on_grid"] = (grid.shape == (3601,) and grid.dtype == np.float32
                             and bool(np.all(np.isfinite(grid))))
        problems += [f"{row['path']}: {name}" for name, ok in checks.items() if not ok]
    assert not problems, problems[:20]


def test_arrays_are_the_files_rows(sample):
    with fits.open(sample["dr1"]) as hdul:
        data, header = hdul[0].data, hdul[0].header
        s = lamost.read_spectrum(sample["dr1"])
        np.testing.assert_array_equal(s.flux, data[0])
        np.testing.assert_array_equal(s.ivar, data[1])
        np.testing.assert_array_equal(s.andmask, data[3])
        np.testing.assert_array_equal(s.ormask, data[4])
        np.testing.assert_allclose(
            s.wavelength, 10 ** (header["COEFF0"] + header["COEFF1"] * np.arange(data.shape[1])))
    with fits.open(sample["dr8"]) as hdul:
        data = hdul[0].data
        s = lamost.read_spectrum(sample["dr8"])
        for got, want in zip((s.flux, s.ivar, s.wavelength, s.andmask, s.ormask), data):
            np.testing.assert_array_equal(got, want)
    with fits.open(sample["dr10"]) as hdul:
        table = hdul["COADD"].data[0]
        s = lamost.read_spectrum(sample["dr10"])
        for name in ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK"):
            np.testing.assert_array_equal(getattr(s, name.lower()), table[name])


def test_spectrum_is_immutable(sample):
    s = lamost.read_spectrum(sample["dr8"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.flux = None
    with pytest.raises(ValueError):
        s.flux[0] = 1.0


def write_fits(hdus, path: Path) -> Path:
    # astropy gzips when the name ends in .gz; "silentfix" drops the stray NAXISj keys that
    # real DR10 primary headers carry (astropy refuses to write them otherwise).
    fits.HDUList(hdus).writeto(path, output_verify="silentfix")
    return path


def primary_copy(source: Path, header_edits=None, data_edit=None) -> list:
    with fits.open(source) as hdul:
        hdus = [hdu.copy() for hdu in hdul]
    for key, value in (header_edits or {}).items():
        if value is None:
            del hdus[0].header[key]
        else:
            hdus[0].header[key] = value
    if data_edit is not None:
        data_edit(hdus)
    return hdus


@pytest.mark.parametrize("folder,new_name", [
    ("dr1", "renamed.fits.gz"), ("dr8", "spec-dr1-style.fits"), ("dr10", "plain.fits")])
def test_layout_comes_from_structure_not_name(sample, tmp_path, folder, new_name):
    path = write_fits(primary_copy(sample[folder]), tmp_path / new_name)
    copy, original = lamost.read_spectrum(path), lamost.read_spectrum(sample[folder])
    assert copy.data_release == original.data_release == LAYOUT_OF_FOLDER[folder]
    np.testing.assert_array_equal(copy.wavelength, original.wavelength)
    np.testing.assert_array_equal(copy.on_grid(), original.on_grid())


def test_missing_header_values_become_none(sample, tmp_path):
    hdus = primary_copy(sample["dr8"], {"CLASS": "", "SUBCLASS": "unknown", "Z": -9999.0,
                                        "SNRG": None, "OBSID": " "})
    s = lamost.read_spectrum(write_fits(hdus, tmp_path / "blank.fits"))
    assert (s.obj_class, s.subclass, s.redshift, s.snr_g, s.obsid) == (None,) * 5
    hdus = primary_copy(sample["dr8"], {"Z": "unknown", "SNRG": "12.5"})
    s = lamost.read_spectrum(write_fits(hdus, tmp_path / "text-numbers.fits"))
    assert s.redshift is None and s.snr_g == 12.5


def truncated(source: Path, tmp_path: Path) -> Path:
    path = tmp_path / f"half-{source.name}"
    path.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return path


def decompressed(source: Path, tmp_path: Path) -> Path:
    path = tmp_path / source.name.removesuffix(".gz")
    path.write_bytes(gzip.decompress(source.read_bytes()))
    return path


def set_rows(rows, value):
    def edit(hdus):
        hdus[0].data[rows] = value
    return edit


def set_column(name, value):
    def edit(hdus):
        hdus[1].data[name][0][:] = value
    return edit


BAD_FILES = {
    "truncated dr1 .fits": (lambda s, d: truncated(s["dr1"], d), "truncated"),
    "truncated dr8 .fits.gz": (lambda s, d: truncated(s["dr8"], d), "truncated"),
    "truncated dr10 .fits.gz": (lambda s, d: truncated(s["dr10"], d), "truncated"),
    "truncated dr10 .fits": (lambda s, d: truncated(decompressed(s["dr10"], d), d), "truncated"),
    "text named .fits": (lambda s, d: _text(d / "notes.fits", "not a spectrum\n"), "FITS"),
    "empty .fits.gz": (lambda s, d: _text(d / "empty.fits.gz", ""), "FITS"),
    "gzipped text": (lambda s, d: _gz(d / "text.fits.gz", b"hello\n" * 100), "FITS"),
    "28x28 image": (lambda s, d: write_fits([fits.PrimaryHDU(np.ones((28, 28), np.float32))],
                                           d / "image.fits"), "not a LAMOST spectrum"),
    "table without the columns": (
        lambda s, d: write_fits([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(
            [fits.Column(name="FLUX", format="10E", array=np.ones((1, 10)))], name="COADD")],
            d / "table.fits.gz"), "not a LAMOST spectrum"),
    "5 rows, no wavelength, no COEFF": (
        lambda s, d: write_fits(primary_copy(s["dr1"], {"COEFF0": None, "COEFF1": None}),
                                d / "nocoeff.fits"), "COEFF0"),
    "all-NaN flux (dr1)": (
        lambda s, d: write_fits(primary_copy(s["dr1"], data_edit=set_rows(0, np.nan)),
                                d / "nan.fits"), "flux"),
    "all-zero ivar (dr8)": (
        lambda s, d: write_fits(primary_copy(s["dr8"], data_edit=set_rows(1, 0.0)),
                                d / "noivar.fits.gz"), "inverse variance"),
    "all-NaN flux (dr10)": (
        lambda s, d: write_fits(primary_copy(s["dr10"], data_edit=set_column("FLUX", np.nan)),
                                d / "nan10.fits.gz"), "flux"),
}


def _text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _gz(path: Path, payload: bytes) -> Path:
    path.write_bytes(gzip.compress(payload))
    return path


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_raises_one_error_naming_it(sample, tmp_path, case):
    make, reason = BAD_FILES[case]
    path = make(sample, tmp_path)
    with pytest.raises(lamost.SpectrumReadError, match=re.escape(path.name)) as info:
        lamost.read_spectrum(path)
    assert reason.lower() in str(info.value).lower()


def test_poor_coverage_fails_on_grid_naming_the_file(sample, tmp_path):
    def hole(hdus):
        wl = hdus[0].data[2]
        hdus[0].data[1][(wl > 4000) & (wl < 8000)] = 0.0
    path = write_fits(primary_copy(sample["dr8"], data_edit=hole), tmp_path / "holey.fits")
    s = lamost.read_spectrum(path)  # readable, but not usable for the recipe
    with pytest.raises(lamost.SpectrumReadError, match="holey.fits") as info:
        s.on_grid()
    assert isinstance(info.value, recipe.BadSpectrumError)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.fits"):
        lamost.read_spectrum(tmp_path / "nowhere.fits")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        lamost.find_spectra(tmp_path / "nowhere")


def test_find_spectra_is_recursive_and_sorted(tmp_path):
    for name in ["b/x.fits", "a/deep/y.fits.gz", "a/z.fits", "c.txt", "a/w.fits.bak", "d.fits"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [p.relative_to(tmp_path).as_posix() for p in lamost.find_spectra(tmp_path)]
    assert found == ["a/deep/y.fits.gz", "a/z.fits", "b/x.fits", "d.fits"]
