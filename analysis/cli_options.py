"""Option parsers shared by the `mlh-analyze` commands (analysis.cli and analysis.doping.cli)."""

from __future__ import annotations

from mlh.errors import MLHError

__all__ = ["parse_interval", "parse_species"]


def parse_interval(text: str, option: str) -> tuple[float, float]:
    """LOWER,UPPER (eV) of command-line option `option` as two floats, LOWER < UPPER."""
    try:
        lower, upper = (float(x) for x in text.split(","))
    except ValueError:
        raise MLHError(f"{option} {text!r} is not of the form LOWER,UPPER (eV)") from None
    if not lower < upper:
        raise MLHError(f"{option} {text!r} is empty: LOWER must be below UPPER")
    return lower, upper


def parse_species(text: str, option: str) -> tuple[str, ...]:
    """Comma-separated chemical symbols of command-line option `option`; MLHError naming
    the option for an empty list or an unknown symbol (checked before any record is read)."""
    from ase.data import atomic_numbers

    symbols = tuple(s.strip() for s in text.split(",") if s.strip())
    if not symbols:
        raise MLHError(f"{option} {text!r} names no species; give symbols such as W,Se")
    unknown = [s for s in symbols if s not in atomic_numbers or s == "X"]
    if unknown:
        raise MLHError(f"{option} {text!r}: unknown element symbol {unknown[0]!r}")
    return symbols
