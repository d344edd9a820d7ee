"""Fermi-Dirac occupations and the Fermi level that holds a given number of electrons.

Energies and widths in eV. A "state weight" is the number of electrons a fully occupied
state holds: 2·w_k for a spin-paired calculation, w_k for each spin channel of a
spin-polarized one (w_k: k-point weight, summing to 1).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from mlh.errors import MLHError

__all__ = ["fermi_dirac", "electron_count", "find_fermi_level", "record_electron_count"]

COUNT_TOLERANCE = 1e-9
"""Electrons: a count this close to the target is exact (also the flat-gap criterion)."""


def record_electron_count(record, n_electrons: float | None = None) -> float:
    """`n_electrons`, else the record's valence electron count (labels.n_electrons)."""
    if n_electrons is None:
        n_electrons = record.labels.n_electrons
    if n_electrons is None:
        raise MLHError("the record has no electron count (labels.n_electrons): pass n_electrons")
    return float(n_electrons)


def fermi_dirac(energies: np.ndarray, fermi_level: float, width: float) -> np.ndarray:
    """Occupations 1 / (1 + exp((E - E_F) / width)) in [0, 1], overflow-safe."""
    if not width > 0:
        raise MLHError(f"the Fermi-Dirac width must be positive, got {width} eV")
    return expit(-(np.asarray(energies, dtype=float) - fermi_level) / width)


def electron_count(
    energies: np.ndarray, state_weights: np.ndarray, fermi_level: float, width: float
) -> float:
    """Electrons held by the states at Fermi level `fermi_level` (eV)."""
    return float(np.dot(state_weights, fermi_dirac(energies, fermi_level, width)))


def find_fermi_level(
    energies: np.ndarray,
    state_weights: np.ndarray,
    n_electrons: float,
    width: float = 0.01,
    electrons_below: float = 0.0,
) -> float:
    """The Fermi level (eV) at which the states hold `n_electrons` electrons.

    Args:
        energies: (n_states,) state energies (eV).
        state_weights: (n_states,) electrons per fully occupied state.
        n_electrons: electrons to place.
        width: Fermi-Dirac width (eV).
        electrons_below: electrons in fully occupied states below every listed energy
            (a windowed spectrum); they count towards `n_electrons`.

    Returns:
        E_F solving count(E_F) = n_electrons by bisection. When the count is flat
        (a gap wider than the smearing tails resolve), the midpoint between the highest
        state more than half occupied and the lowest state less than half occupied.

    Raises:
        MLHError: non-finite input, or an electron count the states cannot hold.
    """
    energies = np.asarray(energies, dtype=float)
    state_weights = np.asarray(state_weights, dtype=float)
    if energies.shape != state_weights.shape or energies.ndim != 1:
        raise MLHError(f"energies {energies.shape} and state weights {state_weights.shape} differ")
    if not (np.isfinite(energies).all() and np.isfinite(state_weights).all() and np.isfinite(n_electrons)):
        raise MLHError("the energies, state weights or electron count are not finite")
    target = float(n_electrons) - electrons_below
    capacity = float(state_weights.sum())
    if target < -COUNT_TOLERANCE or target > capacity + COUNT_TOLERANCE:
        raise MLHError(
            f"{n_electrons:g} electrons do not fit: the states hold {electrons_below:g} to "
            f"{electrons_below + capacity:g} electrons"
        )
    if energies.size == 0 or target <= COUNT_TOLERANCE or target >= capacity - COUNT_TOLERANCE:
        raise MLHError(
            f"{n_electrons:g} electrons fill none or all of the {energies.size} listed states: "
            "the Fermi level is outside the spectrum"
        )
    lower = energies.min() - 40 * width
    upper = energies.max() + 40 * width
    for _ in range(200):
        middle = 0.5 * (lower + upper)
        if electron_count(energies, state_weights, middle, width) < target:
            lower = middle
        else:
            upper = middle
        if upper - lower < 1e-12 * max(1.0, abs(middle)):
            break
    fermi_level = 0.5 * (lower + upper)
    return _gap_midpoint(energies, state_weights, target, width, fermi_level)


def _gap_midpoint(
    energies: np.ndarray, state_weights: np.ndarray, target: float, width: float, fermi_level: float
) -> float:
    """`fermi_level`, or the HOMO/LUMO midpoint when the count is flat across the gap."""
    occupations = fermi_dirac(energies, fermi_level, width)
    below, above = energies[occupations > 0.5], energies[occupations < 0.5]
    if below.size == 0 or above.size == 0:
        return fermi_level
    homo, lumo = below.max(), above.min()
    flat = all(
        abs(electron_count(energies, state_weights, level, width) - target) < COUNT_TOLERANCE
        for level in (homo + 40 * width, lumo - 40 * width)
    ) and lumo - homo > 80 * width
    return float(0.5 * (homo + lumo)) if flat else fermi_level
