"""Read LAMOST low-resolution spectra (FITS, plain or gzipped) with astropy.

Three file layouts exist across the data releases; the layout is told from the file's
structure, never from its name or folder:

- ``DR1``: primary HDU, 5 rows (flux, inverse variance, flux / continuum, and-mask, or-mask),
  no wavelength row: lambda_i = 10 ** (COEFF0 + COEFF1 * i) Angstrom.
- ``DR8``: primary HDU, 5 rows (flux, inverse variance, wavelength, and-mask, or-mask).
- ``DR10``: primary HDU holds only the header; the spectrum is one row of the BinTable
  ``COADD`` with columns FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK (and NORMALIZATION).

Returns the shared ``spectrum.Spectrum`` record. Every failure (not FITS, truncated, not a
LAMOST spectrum, no usable flux) is one ``SpectrumReadError`` whose message names the file
and the reason.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from astropy.io import fits

from astrospectra_jax.data.spectrum import (Spectrum, SpectrumReadError, check_usable, frozen,
                                            read_with)

_TABLE_COLUMNS = ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")
# Header strings that mean "no value" in LAMOST files.
_MISSING_STRINGS = {"", "unknown", "null", "none", "nan", "-"}
# LAMOST writes -9999 for an unmeasured number (e.g. Z of an unclassified spectrum).
_MISSING_NUMBER = -9999.0


def read_spectrum(path) -> Spectrum:
    """Read one LAMOST LRS file (``.fits`` or ``.fits.gz``, DR1, DR8 or DR10 layout)."""
    return read_with(from_hdul, path)


def from_hdul(path: Path, hdul: fits.HDUList) -> Spectrum:
    """The LAMOST spectrum in an open file (``data.readers`` opens each file once)."""
    header = hdul[0].header
    table = _coadd_table(hdul)
    if table is not None:
        data_release = "DR10"
        row = {col: np.asarray(table[0][col]) for col in _TABLE_COLUMNS}
        flux, ivar, wavelength = row["FLUX"], row["IVAR"], row["WAVELENGTH"]
        andmask, ormask = row["ANDMASK"], row["ORMASK"]
    else:
        flux, ivar, third, andmask, ormask = _primary_rows(path, hdul[0])
        if _looks_like_wavelength(third):
            data_release, wavelength = "DR8", third
        else:
            data_release, wavelength = "DR1", _log_linear_wavelength(path, header, flux.size)
    ormask = frozen(_mask(path, "or-mask", ormask), np.int64)
    spectrum = Spectrum(
        path=str(path),
        wavelength=frozen(wavelength, np.float64),
        flux=frozen(flux, np.float32),
        ivar=frozen(ivar, np.float32),
        andmask=frozen(_mask(path, "and-mask", andmask), np.int64),
        ormask=ormask,
        bad_mask=frozen(ormask != 0, bool),
        obj_class=_header_text(header, "CLASS"),
        subclass=_header_text(header, "SUBCLASS"),
        redshift=_header_number(header, "Z"),
        snr_g=_header_number(header, "SNRG", "SN_G"),
        obsid=_header_text(header, "OBSID"),
        data_release=data_release,
    )
    check_usable(spectrum)
    return spectrum


def find_spectra(folder) -> list[Path]:
    """All ``*.fits`` / ``*.fits.gz`` files under ``folder`` (recursive), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.name.lower().endswith((".fits", ".fits.gz")))


def _coadd_table(hdul: fits.HDUList):
    """The DR10-style spectrum table (``COADD`` first, else any table with the columns)."""
    tables = [hdu for hdu in hdul[1:] if isinstance(hdu, fits.BinTableHDU)]
    tables.sort(key=lambda hdu: hdu.name.upper() != "COADD")
    for hdu in tables:
        names = {name.upper() for name in hdu.columns.names}
        if set(_TABLE_COLUMNS) <= names and hdu.data is not None and len(hdu.data) > 0:
            return hdu.data
    return None


def _primary_rows(path: Path, hdu) -> np.ndarray:
    data = hdu.data
    if data is None or data.ndim != 2 or data.shape[0] != 5 or data.shape[1] < 2:
        shape = None if data is None else data.shape
        raise SpectrumReadError(
            f"{path}: not a LAMOST spectrum: expected a primary array of 5 rows "
            f"(flux, ivar, wavelength or flux/continuum, and-mask, or-mask) or a table with "
            f"columns {', '.join(_TABLE_COLUMNS)}; primary data has shape {shape}")
    if not np.issubdtype(data.dtype, np.floating):
        raise SpectrumReadError(f"{path}: not a LAMOST spectrum: primary data is {data.dtype}, "
                              "expected floating point")
    return data


def _looks_like_wavelength(row) -> bool:
    """A wavelength row is finite, strictly increasing and in the optical (Angstrom)."""
    row = np.asarray(row, dtype=np.float64)
    return bool(np.all(np.isfinite(row)) and np.all(np.diff(row) > 0)
                and 1000.0 < row[0] and row[-1] < 20000.0)


def _log_linear_wavelength(path: Path, header, size: int) -> np.ndarray:
    coeff0, coeff1 = header.get("COEFF0"), header.get("COEFF1")
    if not all(isinstance(c, (int, float)) and math.isfinite(c) for c in (coeff0, coeff1)):
        raise SpectrumReadError(f"{path}: no wavelength row and no numeric COEFF0/COEFF1 "
                              "header keys to compute wavelengths from")
    return 10.0 ** (coeff0 + coeff1 * np.arange(size))


def _mask(path: Path, what: str, values) -> np.ndarray:
    values = np.asarray(values)
    if not np.all(np.isfinite(values)):
        raise SpectrumReadError(f"{path}: {what} holds non-finite values")
    return values


def _header_text(header, key: str) -> str | None:
    value = header.get(key)
    if value is None or isinstance(value, (bool, fits.card.Undefined)):
        return None
    text = str(value).strip()
    return None if text.lower() in _MISSING_STRINGS else text


def _header_number(header, *keys: str) -> float | None:
    """The first of ``keys`` present in the header, as a float; missing values become None."""
    for key in keys:
        if key not in header:
            continue
        value = header[key]
        if isinstance(value, str):
            if value.strip().lower() in _MISSING_STRINGS:
                return None
            try:
                value = float(value)
            except ValueError:
                return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        value = float(value)
        return value if math.isfinite(value) and value != _MISSING_NUMBER else None
    return None
