"""Markdown tables and number cells, shared by the classical grid's table and the report."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

MISSING = "—"


def fmt(value, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals; MISSING for None or a non-finite float."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    return f"{value:.{digits}f}"


def signed(value, digits: int = 3) -> str:
    """A difference, always with its sign; MISSING for None."""
    return MISSING if value is None else f"{value:+.{digits}f}"


def cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: Sequence, body: Iterable[Sequence]) -> list[str]:
    """A GitHub Markdown table as lines (no blank line after it)."""
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(map(cell, row)) + " |" for row in body]
