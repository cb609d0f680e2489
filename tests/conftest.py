"""Shared fixtures: the data folder that sits next to the repository (``../shared``).

It holds real LAMOST FITS files (``data/lamost/``) and the paper's tables (``paper/``). It is
not part of the project, so tests that need it skip, with a reason, where it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"


def _existing(folder: Path) -> Path:
    if not folder.is_dir():
        pytest.skip(f"../shared not found: {folder} is absent (data kept next to the repository)")
    return folder


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` next to the repository, or skip."""
    return _existing(SHARED_DIR)


@pytest.fixture(scope="session")
def lamost_dir(shared_dir) -> Path:
    """Real LAMOST spectra (``dr1/``, ``dr8/``, ``dr10/``, ``manifest.csv``), or skip."""
    return _existing(shared_dir / "data" / "lamost")


@pytest.fixture(scope="session")
def paper_dir(shared_dir) -> Path:
    """The paper's result tables (``table2_deep.csv`` ...), or skip."""
    return _existing(shared_dir / "paper")
