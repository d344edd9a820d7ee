"""The projected spectrum: states, their electron capacities and Mulliken projections.

The one intermediate that every analysis (DOS/PDOS, hole concentration) reads, whether
the states came from dense diagonalization or from a sparse window around E_F.
Energies in eV on the absolute energy zero of the Hamiltonian (not shifted to E_F).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlh.errors import MLHError

__all__ = ["ProjectedSpectrum"]


@dataclass(frozen=True)
class ProjectedSpectrum:
    """Eigenstates of (H(k), S(k)) with Mulliken weights on (atom, l) channels.

    Attributes:
        energies: (n_states,) eigenvalues (eV).
        state_weights: (n_states,) electrons per fully occupied state (2·w_k spin-paired).
        spin: (n_states,) spin channel of each state.
        kpoint: (n_states,) index of each state's k-point in `kpoints`.
        kpoints: (n_kpoints, 3) reduced k-points.
        projections: (n_states, n_channels) Mulliken weights; each row sums to 1.
        channel_atom: (n_channels,) atom of each channel.
        channel_l: (n_channels,) angular momentum of each channel.
        numbers: (n_atoms,) atomic numbers.
        cell: (3, 3) cell vectors (Å), rows.
        pbc: (3,) periodic directions.
        fermi_level: E_F (eV).
        n_electrons: electrons placed (after any charge).
        electrons_below: electrons in states below all listed ones (0 for a full spectrum).
        method: "dense" or "shift-invert window".
        energy_range: (lo, hi) eV: every state with energy in [lo, hi] is listed.
    """

    energies: np.ndarray
    state_weights: np.ndarray
    spin: np.ndarray
    kpoint: np.ndarray
    kpoints: np.ndarray
    projections: np.ndarray
    channel_atom: np.ndarray
    channel_l: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    fermi_level: float
    n_electrons: float
    electrons_below: float
    method: str
    energy_range: tuple[float, float]

    def __post_init__(self) -> None:
        n_states = len(self.energies)
        for name in ("state_weights", "spin", "kpoint"):
            if len(getattr(self, name)) != n_states:
                raise MLHError(f"ProjectedSpectrum.{name} has {len(getattr(self, name))} entries, "
                               f"expected {n_states}")
        if self.projections.shape != (n_states, len(self.channel_atom)):
            raise MLHError(f"ProjectedSpectrum.projections has shape {self.projections.shape}, "
                           f"expected ({n_states}, {len(self.channel_atom)})")

    def covers(self, lower: float, upper: float) -> bool:
        """Whether every state with energy in [lower, upper] (eV, absolute) is listed."""
        return self.energy_range[0] <= lower and upper <= self.energy_range[1]
