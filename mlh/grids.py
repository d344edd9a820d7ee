"""Grids written as text: k-point grids ("2x2x1") and supercell repeats ("3x2")."""

from __future__ import annotations

from collections.abc import Collection

from mlh.errors import MLHError


def parse_grid(text: str, name: str, lengths: Collection[int] = (3,)) -> tuple[int, ...]:
    """"2x2x1" -> (2, 2, 1): positive integers joined by "x", as many as one of `lengths`.

    Raises:
        MLHError: naming `name` (the option or field the text came from) and the text.
    """
    try:
        size = tuple(int(n) for n in str(text).lower().split("x"))
    except ValueError:
        size = ()
    if len(size) not in lengths or min(size) < 1:
        counts = " or ".join(str(n) for n in sorted(lengths))
        raise MLHError(f"{name} {text!r} is not a grid like 2x2x1 ({counts} positive integers joined by x)")
    return size
