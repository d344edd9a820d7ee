"""parse_grid: the one parser of "2x2x1" grids and repeats."""

from __future__ import annotations

import pytest

from mlh.errors import MLHError
from mlh.grids import parse_grid


def test_parses_grids_of_the_allowed_lengths():
    assert parse_grid("2x2x1", "--kpts") == (2, 2, 1)
    assert parse_grid("3X2", "--repeat", lengths=(2, 3)) == (3, 2)


@pytest.mark.parametrize("text", ["2x2", "2x0x1", "axbxc", "", "2x2x1x1", "-1x2x2"])
def test_bad_grids_name_the_option(text):
    with pytest.raises(MLHError, match=r"^--kpts .* is not a grid like 2x2x1 \(3 positive integers"):
        parse_grid(text, "--kpts")
