"""Validation of constructor parameters shared by the hw units."""

from __future__ import annotations


def check_int(what: str, value, low: int = 1) -> int:
    """``value`` if it is an integer >= ``low``; else a ValueError that names ``what``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{what} must be {kind}, not {value!r}")
    return value
