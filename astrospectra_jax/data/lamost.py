"""Read LAMOST low-resolution spectra (FITS, plain or gzipped) with astropy.

Three file layouts exist across the data releases; the layout is told from the file's
structure, never from its name or folder:

- ``DR1``: primary HDU, 5 rows (flux, inverse variance, flux / continuum, and-mask, or-mask),
  no wavelength row: lambda_i = 10 ** (COEFF0 + COEFF1 * i) Angstrom.
- ``DR8``: primary HDU, 5 rows (flux, inverse variance, wavelength, and-mask, or-mask).
- ``DR10``: primary HDU holds only the header; the spectrum is one row of the BinTable
  ``COADD`` with columns FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK (and NORMALIZATION).

Every failure (not FITS, truncated, not a LAMOST spectrum, no usable flux) is one
``LamostReadError`` whose message names the file and the reason.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from astrospectra_jax.data import recipe

_GZIP_MAGIC = b"\x1f\x8b"
_TABLE_COLUMNS = ("FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK")
# Header strings that mean "no value" in LAMOST files.
_MISSING_STRINGS = {"", "unknown", "null", "none", "nan", "-"}
# LAMOST writes -9999 for an unmeasured number (e.g. Z of an unclassified spectrum).
_MISSING_NUMBER = -9999.0


class LamostReadError(ValueError):
    """A file that cannot be read as a LAMOST spectrum; the message names file and reason."""


class _UnusableSpectrumError(LamostReadError, recipe.BadSpectrumError):
    """Raised by ``on_grid``: callers may catch it as either error type."""


@dataclasses.dataclass(frozen=True, eq=False)
class LamostSpectrum:
    """One LAMOST spectrum in the observed frame (wavelengths in Angstrom, vacuum)."""

    path: str
    wavelength: np.ndarray  # float64, increasing
    flux: np.ndarray  # float32
    ivar: np.ndarray  # float32
    andmask: np.ndarray  # int64
    ormask: np.ndarray  # int64
    obj_class: str | None
    subclass: str | None
    redshift: float | None
    snr_g: float | None
    obsid: str | None
    data_release: str  # layout name: "DR1", "DR8" or "DR10"

    def on_grid(self) -> np.ndarray:
        """The flux on ``recipe.GRID``: (3601,) float32, bad pixels bridged."""
        try:
            return recipe.to_grid(self.wavelength, self.flux, self.ivar, self.ormask,
                                   name=self.path)
        except recipe.BadSpectrumError as err:
            raise _UnusableSpectrumError(str(err)) from err


def read_spectrum(path) -> LamostSpectrum:
    """Read one LAMOST LRS file (``.fits`` or ``.fits.gz``, DR1, DR8 or DR10 layout)."""
    path = Path(path)
    hdul = _open_fits(path)
    try:
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
                data_release, wavelength = "DR1", _log_linear_wavelength(path, header,
                                                                         flux.size)
        spectrum = LamostSpectrum(
            path=str(path),
            wavelength=_frozen(wavelength, np.float64),
            flux=_frozen(flux, np.float32),
            ivar=_frozen(ivar, np.float32),
            andmask=_frozen(_mask(path, "and-mask", andmask), np.int64),
            ormask=_frozen(_mask(path, "or-mask", ormask), np.int64),
            obj_class=_header_text(header, "CLASS"),
            subclass=_header_text(header, "SUBCLASS"),
            redshift=_header_number(header, "Z"),
            snr_g=_header_number(header, "SNRG", "SN_G"),
            obsid=_header_text(header, "OBSID"),
            data_release=data_release,
        )
    finally:
        hdul.close()
    _check_usable(spectrum)
    return spectrum


def find_spectra(folder) -> list[Path]:
    """All ``*.fits`` / ``*.fits.gz`` files under ``folder`` (recursive), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and p.name.lower().endswith((".fits", ".fits.gz")))


def _open_fits(path: Path) -> fits.HDUList:
    """Open fully in memory; gzip and FITS truncation become ``LamostReadError``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise LamostReadError(f"{path}: cannot read file ({err})") from err
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise LamostReadError(f"{path}: truncated or corrupt gzip data ({err})") from err
    try:
        with warnings.catch_warnings():
            # Damage is reported below as one error; astropy's warnings would only repeat it.
            warnings.simplefilter("ignore", AstropyWarning)
            hdul = fits.open(io.BytesIO(raw), lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as err:
        raise LamostReadError(f"{path}: not a readable FITS file ({err})") from err
    # astropy only warns about a short file; a missing data block is an error here.
    for index, hdu in enumerate(hdul):
        end = hdul.fileinfo(index)["datLoc"] + hdu.size
        if end > len(raw):
            hdul.close()
            raise LamostReadError(
                f"{path}: truncated file ({len(raw)} bytes, HDU {index} needs {end})")
    return hdul


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
        raise LamostReadError(
            f"{path}: not a LAMOST spectrum: expected a primary array of 5 rows "
            f"(flux, ivar, wavelength or flux/continuum, and-mask, or-mask) or a table with "
            f"columns {', '.join(_TABLE_COLUMNS)}; primary data has shape {shape}")
    if not np.issubdtype(data.dtype, np.floating):
        raise LamostReadError(f"{path}: not a LAMOST spectrum: primary data is {data.dtype}, "
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
        raise LamostReadError(f"{path}: no wavelength row and no numeric COEFF0/COEFF1 "
                              "header keys to compute wavelengths from")
    return 10.0 ** (coeff0 + coeff1 * np.arange(size))


def _mask(path: Path, what: str, values) -> np.ndarray:
    values = np.asarray(values)
    if not np.all(np.isfinite(values)):
        raise LamostReadError(f"{path}: {what} holds non-finite values")
    return values


def _frozen(values, dtype) -> np.ndarray:
    array = np.array(values, dtype=dtype)  # native byte order, detached from the file
    array.setflags(write=False)
    return array


def _check_usable(spectrum: LamostSpectrum) -> None:
    path, n = spectrum.path, spectrum.flux.size
    if not all(a.shape == (n,) for a in (spectrum.wavelength, spectrum.ivar,
                                         spectrum.andmask, spectrum.ormask)):
        raise LamostReadError(f"{path}: flux, ivar, wavelength and masks differ in length")
    if not np.all(np.diff(spectrum.wavelength) > 0):
        raise LamostReadError(f"{path}: wavelengths are not strictly increasing")
    if not np.any(np.isfinite(spectrum.flux)):
        raise LamostReadError(f"{path}: flux has no finite value")
    if not np.any(np.isfinite(spectrum.ivar) & (spectrum.ivar > 0)):
        raise LamostReadError(f"{path}: inverse variance is zero or non-finite everywhere")


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
