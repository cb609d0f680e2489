"""One entry point for survey spectra: ``read_spectrum(path)`` picks the reader by content.

SDSS / BOSS files have a per-pixel table with ``loglam`` and ``flux`` in HDU 1; everything else
goes to the LAMOST reader (three layouts), whose error says what it expected. File names and
folders are never looked at.
"""

from __future__ import annotations

from astrospectra_jax.data import lamost, sdss
from astrospectra_jax.data.spectrum import Spectrum, SpectrumReadError, read_with

__all__ = ["Spectrum", "SpectrumReadError", "find_spectra", "read_spectrum", "survey_of"]

find_spectra = lamost.find_spectra  # *.fits / *.fits.gz under a folder, recursive, sorted


def survey_of(hdul) -> str:
    """"SDSS" or "LAMOST": which reader an open file goes to."""
    return "SDSS" if sdss.is_sdss(hdul) else "LAMOST"


def read_spectrum(path) -> Spectrum:
    """Read one LAMOST (DR1 / DR8 / DR10) or SDSS / BOSS spectrum, ``.fits`` or ``.fits.gz``."""
    return read_with(lambda path, hdul: (sdss if survey_of(hdul) == "SDSS" else lamost)
                     .from_hdul(path, hdul), path)
