"""Mulliken analysis: orbital populations and atomic charges (e) from density matrices and
the overlap."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlh.errors import MLHError
from physics.density_matrix import DensityMatrices, as_matrix_stack

__all__ = ["mulliken_populations", "mulliken_charges"]


def mulliken_populations(
    dm: DensityMatrices, S_kMM: np.ndarray, orbital_atom: Sequence[int] | np.ndarray
) -> np.ndarray:
    """(n_spins, n_atoms) gross Mulliken populations (electrons).

    q_s(a) = sum_k w_k sum_{mu in a} Re[rho_s(k) S(k)]_{mu mu}; the sum over atoms and spins
    is the electron count.

    Args:
        dm: density matrices.
        S_kMM: (n_k, N, N) or (N, N) overlaps of the same k-points.
        orbital_atom: (N,) atom index of each orbital (`orbital_atoms(record)`).
    """
    S_kMM = as_matrix_stack(S_kMM, 3, "S")
    orbital_atom = np.asarray(orbital_atom, dtype=np.int64)
    if S_kMM.shape != (dm.n_kpoints, dm.n_orbitals, dm.n_orbitals):
        raise MLHError(f"S has shape {S_kMM.shape}; the density matrices need "
                       f"{(dm.n_kpoints, dm.n_orbitals, dm.n_orbitals)}")
    if orbital_atom.shape != (dm.n_orbitals,) or orbital_atom.min(initial=0) < 0:
        raise MLHError(f"orbital_atom must give a non-negative atom for each of the "
                       f"{dm.n_orbitals} orbitals, got shape {orbital_atom.shape}")
    n_atoms = int(orbital_atom.max()) + 1 if orbital_atom.size else 0
    out = np.zeros((dm.n_spins, n_atoms))
    for s in range(dm.n_spins):
        for k in range(dm.n_kpoints):
            diagonal = np.einsum("mn,nm->m", dm.rho[s, k], S_kMM[k]).real
            out[s] += dm.kpoint_weights[k] * np.bincount(orbital_atom, diagonal, n_atoms)
    return out


def mulliken_charges(
    dm: DensityMatrices,
    S_kMM: np.ndarray,
    orbital_atom: Sequence[int] | np.ndarray,
    valence_charges: Sequence[float] | np.ndarray,
) -> np.ndarray:
    """(n_atoms,) Mulliken charges Z_a - sum_s q_s(a) (e); Z_a valence charges of the atoms."""
    populations = mulliken_populations(dm, S_kMM, orbital_atom).sum(axis=0)
    valence = np.asarray(valence_charges, dtype=float)
    if valence.shape != populations.shape:
        raise MLHError(f"{valence.shape} valence charges for {populations.shape[0]} atoms")
    return valence - populations
