"""The spectrum record every survey reader returns, and the FITS plumbing the readers share.

``Spectrum`` holds one observed spectrum (vacuum wavelengths in Angstrom, observed frame) with
the survey's own class labels; ``on_grid`` puts it through step 1 of the recipe. Readers:
``lamost`` (LAMOST LRS, three layouts), ``sdss`` (SDSS / BOSS ``spec-*.fits``); ``readers``
picks one by file content. Every failure is one ``SpectrumReadError`` naming file and reason.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import warnings
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from astrospectra_jax.data import recipe

_GZIP_MAGIC = b"\x1f\x8b"


class SpectrumReadError(ValueError):
    """A file that cannot be read as a survey spectrum; the message names file and reason."""


class UnusableSpectrumError(SpectrumReadError, recipe.BadSpectrumError):
    """Raised by ``Spectrum.on_grid``: callers may catch it as either error type."""


@dataclasses.dataclass(frozen=True, eq=False)
class Spectrum:
    """One spectrum in the observed frame (wavelengths in Angstrom, vacuum)."""

    path: str
    wavelength: np.ndarray  # float64, increasing
    flux: np.ndarray  # float32
    ivar: np.ndarray  # float32
    andmask: np.ndarray  # int64
    ormask: np.ndarray  # int64
    # Pixels the survey marks unusable, beyond zero ivar (LAMOST: or-mask set; SDSS: and_mask
    # bits that mean no data or rejected): what the recipe bridges over.
    bad_mask: np.ndarray  # bool
    obj_class: str | None
    subclass: str | None
    redshift: float | None
    snr_g: float | None
    obsid: str | None
    data_release: str  # layout name: "DR1", "DR8", "DR10" (LAMOST) or "SDSS"
    zwarning: int | None = None  # SDSS redshift warning flags (0: no known problem)

    def on_grid(self) -> np.ndarray:
        """The flux on ``recipe.GRID``: (3601,) float32, bad pixels bridged."""
        try:
            return recipe.to_grid(self.wavelength, self.flux, self.ivar, self.bad_mask,
                                  name=self.path)
        except recipe.BadSpectrumError as err:
            raise UnusableSpectrumError(str(err)) from err


def open_fits(path: Path) -> fits.HDUList:
    """Open fully in memory; gzip and FITS truncation become ``SpectrumReadError``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpectrumReadError(f"{path}: cannot read file ({err})") from err
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:
            raise SpectrumReadError(f"{path}: truncated or corrupt gzip data ({err})") from err
    try:
        with warnings.catch_warnings():
            # Damage is reported below as one error; astropy's warnings would only repeat it.
            warnings.simplefilter("ignore", AstropyWarning)
            hdul = fits.open(io.BytesIO(raw), lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as err:
        raise SpectrumReadError(f"{path}: not a readable FITS file ({err})") from err
    # astropy only warns about a short file; a missing data block is an error here.
    for index, hdu in enumerate(hdul):
        end = hdul.fileinfo(index)["datLoc"] + hdu.size
        if end > len(raw):
            hdul.close()
            raise SpectrumReadError(
                f"{path}: truncated file ({len(raw)} bytes, HDU {index} needs {end})")
    return hdul


def read_with(from_hdul, path) -> Spectrum:
    """Open ``path`` (``open_fits``) and hand it to a reader's ``from_hdul(path, hdul)``."""
    path = Path(path)
    hdul = open_fits(path)
    try:
        return from_hdul(path, hdul)
    finally:
        hdul.close()


def frozen(values, dtype) -> np.ndarray:
    """A read-only copy in native byte order, detached from the file."""
    array = np.array(values, dtype=dtype)
    array.setflags(write=False)
    return array


def check_usable(spectrum: Spectrum) -> None:
    """Equal lengths, increasing wavelengths, some finite flux and some positive ivar."""
    path, n = spectrum.path, spectrum.flux.size
    if not all(a.shape == (n,) for a in (spectrum.wavelength, spectrum.ivar, spectrum.andmask,
                                         spectrum.ormask, spectrum.bad_mask)):
        raise SpectrumReadError(f"{path}: flux, ivar, wavelength and masks differ in length")
    if not np.all(np.diff(spectrum.wavelength) > 0):
        raise SpectrumReadError(f"{path}: wavelengths are not strictly increasing")
    if not np.any(np.isfinite(spectrum.flux)):
        raise SpectrumReadError(f"{path}: flux has no finite value")
    if not np.any(np.isfinite(spectrum.ivar) & (spectrum.ivar > 0)):
        raise SpectrumReadError(f"{path}: inverse variance is zero or non-finite everywhere")
