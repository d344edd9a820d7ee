"""Option parsers shared by the `mlh-analyze` commands (analysis.cli and analysis.doping.cli)."""

from __future__ import annotations

from mlh.errors import MLHError

__all__ = ["parse_interval"]


def parse_interval(text: str, option: str) -> tuple[float, float]:
    """LOWER,UPPER (eV) of command-line option `option` as two floats, LOWER < UPPER."""
    try:
        lower, upper = (float(x) for x in text.split(","))
    except ValueError:
        raise MLHError(f"{option} {text!r} is not of the form LOWER,UPPER (eV)") from None
    if not lower < upper:
        raise MLHError(f"{option} {text!r} is empty: LOWER must be below UPPER")
    return lower, upper
