"""The per-atom potential term of models with `atom_potential`: u_a S_aa on-site and
(u_i + u_j) / 2 S_ij on pairs (eV).

A potential that is nearly constant, u_a, over the orbitals of each atom changes the
Hamiltonian by about (u_i + u_j) / 2 S_ij (the Mulliken approximation of <i|V|j>), so one
number moves all of an atom's blocks together, as the self-consistent potential does
(benchmarks/onsite_long_wavelength.py measures how much of the model's error such a term
carries). With every u_a = c it is exactly the gauge shift c S. The term is linear in S, so
it is the same in the irreps layout of training (S's irreps) and in the record layout of
inference and the physics routes (S's values). Functions take numpy or jax.numpy arrays.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["ValueAtoms", "value_atoms", "add_to_irreps", "potential_values", "add_to_values",
           "populations"]


class ValueAtoms(NamedTuple):
    """The atoms of every stored value of a record layout (mlh.record.hamiltonian).

    Attributes:
        pair_i, pair_j: (n_pair_values,) row and column atom of each pair value.
        onsite: (n_onsite_values,) atom of each on-site value.
    """

    pair_i: np.ndarray
    pair_j: np.ndarray
    onsite: np.ndarray


def value_atoms(pair_i: np.ndarray, pair_j: np.ndarray, orbital_counts: np.ndarray) -> ValueAtoms:
    """Atoms of the values of pairs (pair_i, pair_j) and of every atom's on-site block, with
    blocks of orbital_counts[i] x orbital_counts[j] values stored one after the other."""
    counts = np.asarray(orbital_counts)
    sizes = counts[pair_i] * counts[pair_j]
    return ValueAtoms(
        pair_i=np.repeat(np.asarray(pair_i), sizes),
        pair_j=np.repeat(np.asarray(pair_j), sizes),
        onsite=np.repeat(np.arange(len(counts)), counts**2),
    )


def add_to_irreps(
    onsite: Any, offsite: Any, potential: Any, onsite_overlap: Any, offsite_overlap: Any,
    bond_i: Any, bond_j: Any,
) -> tuple[Any, Any]:
    """On-site (N, 2, L, F) and pair (B, 2, L, F) irreps with the potential term of
    `potential` (N,) added; S's irreps in the same layouts, bonds i -> j."""
    pair_level = 0.5 * (potential[bond_i] + potential[bond_j])
    return (onsite + potential[:, None, None, None] * onsite_overlap,
            offsite + pair_level[:, None, None, None] * offsite_overlap)


def potential_values(potential: Any, atoms: ValueAtoms) -> tuple[Any, Any]:
    """The factor of S of every pair value, (u_i + u_j) / 2, and on-site value, u_a (eV)."""
    return 0.5 * (potential[atoms.pair_i] + potential[atoms.pair_j]), potential[atoms.onsite]


def add_to_values(H_pair: Any, H_onsite: Any, S_pair: Any, S_onsite: Any, potential: Any,
                  atoms: ValueAtoms) -> tuple[Any, Any]:
    """Record-layout pair and on-site values of H (eV) with the potential term added."""
    pair_level, onsite_level = potential_values(potential, atoms)
    return H_pair + pair_level * S_pair, H_onsite + onsite_level * S_onsite


def populations(rho_pair: np.ndarray, rho_onsite: np.ndarray, S_pair: np.ndarray,
                S_onsite: np.ndarray, atoms: ValueAtoms, n_atoms: int) -> np.ndarray:
    """d/du_a of sum rho * (potential term) over the stored values: the Mulliken-like
    population of each atom (n_atoms,) for record-layout weights rho (any unit)."""
    pair = 0.5 * rho_pair * S_pair
    return (np.bincount(atoms.pair_i, pair, n_atoms) + np.bincount(atoms.pair_j, pair, n_atoms)
            + np.bincount(atoms.onsite, rho_onsite * S_onsite, n_atoms))
