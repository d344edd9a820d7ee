"""Fermi-Dirac occupations and the Fermi level (physics/occupations.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlh.errors import MLHError
from physics.occupations import electron_count, fermi_dirac, find_fermi_level


def test_fermi_dirac_is_half_at_fermi_level_and_overflow_safe():
    energies = np.array([-1e6, -1.0, 0.0, 1.0, 1e6])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        occupations = fermi_dirac(energies, 0.0, 1e-3)
    np.testing.assert_allclose(occupations, [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-300)
    with pytest.raises(MLHError, match="width must be positive"):
        fermi_dirac(energies, 0.0, 0.0)


def test_electron_count_sums_weighted_occupations():
    energies, weights = np.array([-1.0, 0.0, 1.0]), np.array([2.0, 1.0, 0.5])
    assert electron_count(energies, weights, 0.0, 0.01) == pytest.approx(2.5)


def test_gap_gives_homo_lumo_midpoint():
    energies = np.array([-3.0, -1.0, 0.4, 2.0])
    fermi = find_fermi_level(energies, np.full(4, 2.0), 4.0, width=0.01)
    assert fermi == pytest.approx(-0.3, abs=1e-12)


def test_gap_midpoint_with_kpoint_weights_and_spin_channels():
    # Two k-points (weights 1/4, 3/4), two spin channels: state weights are w_k.
    energies = np.array([-2.0, 1.0, -1.5, 0.5, -2.1, 1.2, -1.4, 0.7])
    weights = np.array([0.25, 0.25, 0.75, 0.75, 0.25, 0.25, 0.75, 0.75])
    fermi = find_fermi_level(energies, weights, 2.0, width=0.01)
    assert fermi == pytest.approx(0.5 * (-1.4 + 0.5), abs=1e-12)


def test_partly_filled_degenerate_level_pins_fermi_level():
    # A threefold degenerate level holding 3 of its 6 electrons: E_F sits on the level.
    energies = np.array([-1.0, 0.2, 0.2, 0.2, 1.5])
    fermi = find_fermi_level(energies, np.full(5, 2.0), 5.0, width=0.01)
    assert fermi == pytest.approx(0.2, abs=1e-9)
    assert electron_count(energies, np.full(5, 2.0), fermi, 0.01) == pytest.approx(5.0, abs=1e-9)


def test_metal_count_is_exact():
    rng = np.random.default_rng(0)
    energies = np.sort(rng.uniform(-5, 5, 2000))
    weights = np.full(2000, 2.0 / 50)  # 40 states per k-point set, 50 k-points
    for n_electrons in (13.3, 40.0, 71.9):
        fermi = find_fermi_level(energies, weights, n_electrons, width=0.01)
        assert electron_count(energies, weights, fermi, 0.01) == pytest.approx(n_electrons,
                                                                               abs=1e-9)


def test_electrons_below_count_towards_the_total():
    fermi = find_fermi_level(np.array([0.0, 1.0]), np.array([2.0, 2.0]), 12.0, width=0.01,
                             electrons_below=10.0)
    assert fermi == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("n_electrons, match", [
    (9.0, "do not fit"), (-1.0, "do not fit"), (8.0, "outside the spectrum"),
    (0.0, "outside the spectrum"), (np.nan, "not finite"),
])
def test_impossible_counts_raise(n_electrons, match):
    with pytest.raises(MLHError, match=match):
        find_fermi_level(np.array([-1.0, 0.0, 1.0, 2.0]), np.full(4, 2.0), n_electrons)


def test_mismatched_or_nan_input_raises():
    with pytest.raises(MLHError, match="differ"):
        find_fermi_level(np.zeros(3), np.ones(2), 1.0)
    with pytest.raises(MLHError, match="not finite"):
        find_fermi_level(np.array([0.0, np.nan]), np.ones(2), 1.0)


@settings(max_examples=60, deadline=None)
@given(
    energies=st.lists(st.floats(-10, 10), min_size=2, max_size=40),
    fraction=st.floats(0.02, 0.98),
    width=st.sampled_from([0.001, 0.01, 0.1]),
)
def test_fermi_level_places_the_electrons(energies, fraction, width):
    energies = np.array(energies)
    weights = np.full(len(energies), 2.0)
    n_electrons = fraction * weights.sum()
    fermi = find_fermi_level(energies, weights, n_electrons, width=width)
    count = electron_count(energies, weights, fermi, width)
    occupations = fermi_dirac(energies, fermi, width)
    # Either the count is exact, or E_F lies in a gap the smearing tails do not resolve.
    assert abs(count - n_electrons) < 1e-6 or (
        np.all((occupations > 1 - 1e-6) | (occupations < 1e-6))
        and abs(count - round(count)) < 1e-6
    )
