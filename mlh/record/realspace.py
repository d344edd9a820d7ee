"""Exact H(R), S(R) from Bloch matrices on an alias-free k-point grid.

If every non-zero block H_{ij}(R) has |R_d| <= Rmax_d, a Γ-centred grid with
N_d >= 2 Rmax_d + 1 points along each periodic direction d resolves every R
uniquely:

    H(R) = (1 / N_k) sum_k exp(-2 pi i k . R) H(k).

Image pairs are found geometrically: H_{ij}(R) can only be non-zero if
|tau_j + R @ cell - tau_i| < reach_i + reach_j, where reach is the largest basis
cutoff of the atom plus the largest PAW-projector cutoff (three-centre terms).
Lengths in Å, k in reduced coordinates.
"""

from __future__ import annotations

import numpy as np
from ase.neighborlist import primitive_neighbor_list

from mlh.errors import MLHError
from mlh.record.hamiltonian import block_coo, canonical_pair_mask
from mlh.record.kpoints import gamma_centred_grid

__all__ = [
    "image_pairs",
    "alias_free_grid",
    "unfold_time_reversal",
    "blocks_from_bloch",
]


def image_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, reach: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored-orientation pairs (i, j, R) with |tau_j + R @ cell - tau_i| < reach_i + reach_j.

    On-site entries (i, i, 0) are excluded. Returns pair_i (P,), pair_j (P,), shift (P, 3),
    sorted by (i, j, R).
    """
    i, j, shift = primitive_neighbor_list(
        "ijS", pbc, cell, positions, reach, self_interaction=False
    )
    keep = canonical_pair_mask(i, j, shift)
    i, j, shift = i[keep], j[keep], shift[keep].astype(np.int64)
    order = np.lexsort((shift[:, 2], shift[:, 1], shift[:, 0], j, i))
    return i[order], j[order], shift[order]


def alias_free_grid(shifts: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Smallest odd Γ-centred grid size (3,) that resolves every lattice shift in `shifts`."""
    rmax = np.abs(shifts).max(axis=0) if len(shifts) else np.zeros(3, dtype=int)
    grid = 2 * rmax + 1
    if np.any(grid[~np.asarray(pbc, bool)] != 1):
        raise MLHError("a pair crosses a non-periodic boundary")
    return grid.astype(int)


def unfold_time_reversal(
    bloch_kMM: np.ndarray, ibz_kpoints: np.ndarray, grid: np.ndarray
) -> np.ndarray:
    """Matrices on the full Γ-centred grid from a time-reversal-reduced set.

    Uses M(-k) = conj(M(k)), exact for real basis functions. Shapes: (..., K_ibz, M, M)
    in, (..., prod(grid), M, M) out, ordered like `gamma_centred_grid(grid)`.
    """
    full = gamma_centred_grid(grid)
    ibz_index = {tuple(np.rint(k * grid).astype(int) % grid): n for n, k in enumerate(ibz_kpoints)}
    out = np.empty(bloch_kMM.shape[:-3] + (len(full),) + bloch_kMM.shape[-2:], dtype=complex)
    for n, k in enumerate(full):
        key = tuple(np.rint(k * grid).astype(int) % grid)
        if key in ibz_index:
            out[..., n, :, :] = bloch_kMM[..., ibz_index[key], :, :]
            continue
        minus = tuple(np.rint(-k * grid).astype(int) % grid)
        if minus not in ibz_index:
            raise MLHError(f"k-point {k} is missing from the irreducible set")
        out[..., n, :, :] = bloch_kMM[..., ibz_index[minus], :, :].conj()
    return out


def blocks_from_bloch(
    bloch_kMM: np.ndarray,
    grid: np.ndarray,
    pair_i: np.ndarray,
    pair_j: np.ndarray,
    pair_shift: np.ndarray,
    orbital_counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Flat pair and on-site block values from Bloch matrices on the full grid.

    Args:
        bloch_kMM: (..., prod(grid), M, M) matrices ordered like gamma_centred_grid(grid).
        grid: (3,) alias-free grid sizes.
        pair_i, pair_j, pair_shift: stored pairs (see HamiltonianRecord).
        orbital_counts: (n_atoms,) orbitals per atom.

    Returns:
        pair_values (..., n_pair_values), onsite_values (..., n_onsite_values), and the
        largest imaginary part seen in the back-transformed blocks (a consistency check:
        it is round-off when the grid is alias-free).
    """
    kpoints = gamma_centred_grid(grid)
    rows, cols, pair_of_value = block_coo(pair_i, pair_j, orbital_counts)
    atoms = np.arange(len(orbital_counts))
    orow, ocol, _ = block_coo(atoms, atoms, orbital_counts)

    lead = bloch_kMM.shape[:-3]
    pair_values = np.empty(lead + (len(rows),))
    max_imag = 0.0

    def transform(shift: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
        """Real part of M(R)[row, col] for lattice shift R (only those elements)."""
        nonlocal max_imag
        phase = np.exp(-2j * np.pi * (kpoints @ shift)) / len(kpoints)
        values = np.einsum("...kv,k->...v", bloch_kMM[..., row, col], phase)
        max_imag = max(max_imag, float(np.abs(values.imag).max(initial=0.0)))
        return values.real

    onsite_values = transform(np.zeros(3), orow, ocol)
    unique_shifts, shift_index = np.unique(pair_shift, axis=0, return_inverse=True)
    value_shift = shift_index.reshape(-1)[pair_of_value]
    for n, shift in enumerate(unique_shifts):
        mask = value_shift == n
        pair_values[..., mask] = transform(shift, rows[mask], cols[mask])
    return pair_values, onsite_values, max_imag
