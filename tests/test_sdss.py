"""The SDSS / BOSS reader on every real file in ../shared/data/sdss, the content-based choice
of reader, damaged copies, and `convert fits` on SDSS spectra."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from astrospectra_jax.data import readers, recipe, sdss, sources


@pytest.fixture(scope="module")
def sdss_dir(shared_dir) -> Path:
    folder = shared_dir / "data" / "sdss"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent (real SDSS spectra kept next to the repository)")
    return folder


@pytest.fixture(scope="module")
def manifest(sdss_dir) -> dict[str, dict]:
    with open(sdss_dir / "manifest.csv", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def spectra(sdss_dir, manifest) -> dict[str, readers.Spectrum]:
    return {name: readers.read_spectrum(sdss_dir / name) for name in manifest}


def test_every_real_file_reads_like_the_manifest(spectra, manifest, sdss_dir):
    assert len(manifest) == 59
    assert sorted(p.name for p in sdss_dir.glob("*.fits")) == sorted(manifest)
    problems = []
    for name, row in manifest.items():
        s = spectra[name]
        checks = {
            "survey": s.data_release == "SDSS",
            "class": s.obj_class == row["class"],
            "subclass": (s.subclass or "") == row["subclass"],
            "z": s.redshift == pytest.approx(float(row["z"]), abs=1e-5),
            "zwarning": s.zwarning is not None and s.zwarning >= 0,
            # vacuum Angstrom, steps of 1e-4 in log10 (float32 loglam: to ~0.3%);
            # SDSS-I/II ~3800-9200, BOSS ~3600-10400
            "wavelength": 3500 < s.wavelength[0] < 3900 and 9100 < s.wavelength[-1] < 10500,
            "log grid": np.allclose(np.diff(np.log10(s.wavelength)), 1e-4, rtol=1e-2),
            "lengths": len({a.size for a in (s.wavelength, s.flux, s.ivar, s.andmask,
                                              s.ormask, s.bad_mask)}) == 1,
        }
        problems += [f"{name}: {k}" for k, ok in checks.items() if not ok]
    assert not problems


def test_classes_and_warnings_match_the_readme(spectra):
    classes = [s.obj_class for s in spectra.values()]
    assert {c: classes.count(c) for c in set(classes)} == {"QSO": 50, "GALAXY": 6, "STAR": 3}
    warned = [s for s in spectra.values() if s.obj_class == "GALAXY" and s.zwarning == 4]
    assert len(warned) == 2


def test_every_real_file_passes_the_recipe(spectra):
    for s in spectra.values():
        grid = s.on_grid()  # raises naming the file if coverage of 3700-9100 A is too low
        assert grid.shape == (recipe.GRID_SIZE,) and np.all(np.isfinite(grid))
        good = recipe.good_pixels(s.flux, s.ivar, s.bad_mask)
        assert recipe.grid_coverage(s.wavelength, good) > 0.9, s.path


def test_reader_is_chosen_by_content_not_name(sdss_dir, lamost_dir, tmp_path):
    sdss_copy = tmp_path / "looks_like_lamost.fits.gz"
    import gzip
    sdss_copy.write_bytes(gzip.compress((sdss_dir / "spec-0266-51602-0013.fits").read_bytes()))
    assert readers.read_spectrum(sdss_copy).data_release == "SDSS"
    lamost_file = sorted((lamost_dir / "dr10").glob("*.fits*"))[0]
    lamost_copy = tmp_path / "spec-0000-00000-0000.fits.gz"
    shutil.copy(lamost_file, lamost_copy)
    assert readers.read_spectrum(lamost_copy).data_release == "DR10"


def _edited_copy(source: Path, target: Path, edit) -> Path:
    with fits.open(source) as hdul:
        hdul = fits.HDUList([hdu.copy() for hdu in hdul])
    edit(hdul)
    hdul.writeto(target)
    return target


def _nan_flux(hdul):
    hdul[1].data["flux"][:] = np.nan


def _drop_specobj(hdul):
    del hdul[2:]


def _no_loglam_column(hdul):
    columns = [c for c in hdul[1].columns if c.name.lower() != "loglam"]
    hdul[1] = fits.BinTableHDU.from_columns(columns)


BAD_COPIES = {
    "non-finite flux": (_nan_flux, "flux has no finite value"),
    "no SPECOBJ": (_drop_specobj, "HDU 2 should be the object record"),
    # Without loglam the file is no longer SDSS-shaped: the LAMOST reader says what it expected.
    "no loglam": (_no_loglam_column, "not a LAMOST spectrum"),
}


@pytest.mark.parametrize("case", list(BAD_COPIES))
def test_bad_file_raises_one_error_naming_it(sdss_dir, tmp_path, case):
    edit, reason = BAD_COPIES[case]
    path = _edited_copy(sdss_dir / "spec-0266-51602-0013.fits", tmp_path / "damaged.fits", edit)
    with pytest.raises(readers.SpectrumReadError, match=re.escape(path.name)) as info:
        readers.read_spectrum(path)
    assert reason.lower() in str(info.value).lower()


def test_truncated_file_names_the_file(sdss_dir, tmp_path):
    raw = (sdss_dir / "spec-0266-51602-0013.fits").read_bytes()
    path = tmp_path / "cut.fits"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(readers.SpectrumReadError, match=r"cut\.fits.*truncated"):
        sdss.read_spectrum(path)


def test_convert_fits_reads_sdss_folders(sdss_dir, tmp_path):
    examples, skipped, seen = sources.read_fits_folder(sdss_dir, "v1", progress=False)
    assert seen == 59 and skipped.count() == 0
    assert sorted(np.bincount(examples.labels, minlength=3)) == [3, 6, 50]
    assert examples.images.shape == (59, 28, 28) and examples.lines.shape == (59, 721)
