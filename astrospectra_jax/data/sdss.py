"""Read SDSS / BOSS ``spec-PLATE-MJD-FIBER.fits`` spectra (the "spec-lite" files) with astropy.

Layout: HDU 1 (``COADD``), one row per pixel with columns ``loglam`` (log10 vacuum wavelength,
Angstrom, observed frame), ``flux`` (1e-17 erg/s/cm^2/A), ``ivar``, ``and_mask``, ``or_mask``;
HDU 2 (``SPECOBJ``), one row with the pipeline's ``CLASS`` (STAR / GALAXY / QSO), ``SUBCLASS``,
``Z`` and ``ZWARNING``. Column names are upper case in BOSS files and lower case in SDSS-I/II
ones, and HDU names are absent in some; the reader goes by position and column names.

Bad pixels: the pipeline already zeroes ``ivar`` where a pixel is unusable; besides that, the
``and_mask`` bits that mean no data or rejection in every exposure (``_BAD_AND_MASK_BITS``) are
bridged by the recipe. The or-mask is kept but not used: it flags pixels where any single
exposure had a problem (most pixels of a typical BOSS spectrum carry a bit), as do several
informational and-mask bits (BADFLAT and LOWFLAT cover whole spectra the pipeline classified).

Returns the shared ``spectrum.Spectrum`` record (``data_release="SDSS"``); every failure is
one ``SpectrumReadError`` naming the file and the reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from astrospectra_jax.data.spectrum import (Spectrum, SpectrumReadError, check_usable, frozen,
                                            read_with)

PIXEL_COLUMNS = ("loglam", "flux", "ivar", "and_mask", "or_mask")
OBJECT_COLUMNS = ("CLASS", "SUBCLASS", "Z", "ZWARNING")
# spPixMask bits: FULLREJECT (18), COMBINEREJ (25), NODATA (24) and BRIGHTSKY (23, sky
# residuals stronger than the object).
_BAD_AND_MASK_BITS = (18, 23, 24, 25)
_BAD_AND_MASK = sum(1 << bit for bit in _BAD_AND_MASK_BITS)


def is_sdss(hdul: fits.HDUList) -> bool:
    """True when HDU 1 is a table with SDSS's per-pixel ``loglam`` and ``flux`` columns."""
    return (len(hdul) > 1 and isinstance(hdul[1], fits.BinTableHDU)
            and {"loglam", "flux"} <= _lower_names(hdul[1]))


def read_spectrum(path) -> Spectrum:
    """Read one SDSS / BOSS ``spec-*.fits`` file (plain or gzipped)."""
    return read_with(from_hdul, path)


def from_hdul(path: Path, hdul: fits.HDUList) -> Spectrum:
    """The SDSS spectrum in an open file (``data.readers`` opens each file once)."""
    pixels = _table(path, hdul, 1, "per-pixel spectrum (COADD)", PIXEL_COLUMNS)
    specobj = _table(path, hdul, 2, "object record (SPECOBJ)", OBJECT_COLUMNS)
    if len(pixels) < 2:
        raise SpectrumReadError(f"{path}: HDU 1 holds {len(pixels)} pixel rows")
    if len(specobj) != 1:
        raise SpectrumReadError(f"{path}: HDU 2 (SPECOBJ) holds {len(specobj)} rows, expected 1")
    column = {name.lower(): name for name in pixels.columns.names}
    loglam = np.asarray(pixels[column["loglam"]], dtype=np.float64)
    if not np.all(np.isfinite(loglam)):
        raise SpectrumReadError(f"{path}: loglam holds non-finite values")
    andmask = frozen(pixels[column["and_mask"]], np.int64)
    names = {name.upper(): name for name in specobj.columns.names}
    obj = {key: specobj[names[key]][0] for key in OBJECT_COLUMNS}  # only these: 100+ columns
    zwarning = obj["ZWARNING"]
    spectrum = Spectrum(
        path=str(path),
        wavelength=frozen(10.0 ** loglam, np.float64),
        flux=frozen(pixels[column["flux"]], np.float32),
        ivar=frozen(pixels[column["ivar"]], np.float32),
        andmask=andmask,
        ormask=frozen(pixels[column["or_mask"]], np.int64),
        bad_mask=frozen((andmask & _BAD_AND_MASK) != 0, bool),
        obj_class=_text(obj["CLASS"]),
        subclass=_text(obj["SUBCLASS"]),
        redshift=_number(obj["Z"]),
        snr_g=None,
        obsid=None,
        data_release="SDSS",
        zwarning=int(zwarning),
    )
    check_usable(spectrum)
    return spectrum


def _lower_names(hdu) -> set[str]:
    return {name.lower() for name in hdu.columns.names}


def _table(path: Path, hdul: fits.HDUList, index: int, what: str, columns) -> fits.FITS_rec:
    hdu = hdul[index] if len(hdul) > index else None
    if not isinstance(hdu, fits.BinTableHDU):
        found = "missing" if hdu is None else type(hdu).__name__
        raise SpectrumReadError(f"{path}: not an SDSS spectrum: HDU {index} should be the "
                                f"{what} table, found {found}")
    missing = [c for c in columns if c.lower() not in _lower_names(hdu)]
    if missing or hdu.data is None:
        raise SpectrumReadError(f"{path}: not an SDSS spectrum: HDU {index} ({what}) lacks "
                                f"columns {', '.join(missing) or 'data'}")
    return hdu.data


def _text(value) -> str | None:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return text.strip() or None


def _number(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
