"""The Hamiltonian record: one structure, its basis, and its H(R), S(R) blocks.

This is the single data type that crosses package boundaries in mlh (schema
version `SCHEMA_VERSION`, documented in docs/schema.md). Units: energies in eV,
lengths in Å, S dimensionless.

Real-space convention. The block of pair p = (i, j, R) is

    H_p[mu, nu] = < phi_{i,mu}(r - tau_i) | H | phi_{j,nu}(r - tau_j - R @ cell) >,

with R an integer vector of lattice translations. Each unordered pair is stored
once: i < j (any R), or i == j with R lexicographically positive; its partner is
H_{j,i}(-R) = H_{i,j}(R)^T. The on-site blocks (i, i, 0) are stored separately.
Bloch sums use

    H(k) = sum_R exp(+2 pi i k . R) H(R),     k in reduced (fractional) coordinates,

which is GPAW's LCAO convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp

from mlh.errors import MLHError
from mlh.record.basis import Basis

__all__ = [
    "SCHEMA_VERSION", "READABLE_SCHEMA_VERSIONS", "Labels", "HamiltonianRecord",
    "canonical_pair_mask", "block_coo",
]

SCHEMA_VERSION = "1.1"
"""Written by this version; "1.0" records (no H0) are read as well."""

READABLE_SCHEMA_VERSIONS = ("1.0", "1.1")


@dataclass(frozen=True)
class Labels:
    """Optional DFT labels of a record (all in eV / Å).

    Attributes:
        energy: total energy extrapolated to zero smearing (eV).
        free_energy: Mermin free energy (eV).
        forces: (n_atoms, 3) forces (eV/Å).
        fermi_level: Fermi level (eV).
        n_electrons: number of valence electrons.
        kpoints: (n_kpoints, 3) reduced coordinates of the k-points of `eigenvalues`.
        kpoint_weights: (n_kpoints,) weights summing to 1.
        eigenvalues: (n_spins, n_kpoints, n_bands) Kohn-Sham eigenvalues (eV).
    """

    energy: float | None = None
    free_energy: float | None = None
    forces: np.ndarray | None = None
    fermi_level: float | None = None
    n_electrons: float | None = None
    kpoints: np.ndarray | None = None
    kpoint_weights: np.ndarray | None = None
    eigenvalues: np.ndarray | None = None


def canonical_pair_mask(i: np.ndarray, j: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """True where (i, j, R) is the stored orientation of its unordered pair.

    Stored: i < j, or i == j with R lexicographically > 0. Shapes: (P,), (P,), (P, 3).
    """
    lead = shift[np.arange(len(shift)), np.argmax(shift != 0, axis=1)]  # first non-zero of R
    return (i < j) | ((i == j) & (lead > 0))


@dataclass(frozen=True, eq=False)
class HamiltonianRecord:
    """A structure with its localized-orbital H(R) and S(R) blocks.

    Attributes:
        numbers: (n_atoms,) atomic numbers.
        positions: (n_atoms, 3) Cartesian positions (Å).
        cell: (3, 3) lattice vectors as rows (Å).
        pbc: (3,) periodic directions.
        ghost: (n_atoms,) True for ghost atoms (basis functions, no potential).
        basis: per-species basis description.
        pair_i, pair_j: (n_pairs,) atom indices of each stored pair.
        pair_shift: (n_pairs, 3) integer lattice shift R of atom j.
        S_pair: (n_pair_values,) concatenated row-major S blocks of the pairs.
        S_onsite: (n_onsite_values,) concatenated row-major on-site S blocks.
        H_pair: (n_spins, n_pair_values) H blocks (eV), or None for overlap-only records.
        H_onsite: (n_spins, n_onsite_values) on-site H blocks (eV), or None.
        H0_pair, H0_onsite: the same for the zeroth-step Hamiltonian H0 (eV): the Kohn-Sham
            H at the superposition of neutral-atom densities, before any SCF step (GPAW's
            initial potential), or None. Same pair list as H; its settings are in the
            provenance ("baseline_*" entries).
        labels: optional DFT labels.
        provenance: flat mapping of how the data were made (code versions, xc, basis,
            grid spacing, k-points, convergence, setups, ...); str/int/float values.
    """

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    ghost: np.ndarray
    basis: Basis
    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_shift: np.ndarray
    S_pair: np.ndarray
    S_onsite: np.ndarray
    H_pair: np.ndarray | None = None
    H_onsite: np.ndarray | None = None
    H0_pair: np.ndarray | None = None
    H0_onsite: np.ndarray | None = None
    labels: Labels = field(default_factory=Labels)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Check shapes and invariants; raise MLHError naming the first problem."""
        n_atoms = len(self.numbers)
        expect = {
            "positions": (self.positions.shape, (n_atoms, 3)),
            "cell": (self.cell.shape, (3, 3)),
            "pbc": (self.pbc.shape, (3,)),
            "ghost": (self.ghost.shape, (n_atoms,)),
            "pair_j": (self.pair_j.shape, self.pair_i.shape),
            "pair_shift": (self.pair_shift.shape, (len(self.pair_i), 3)),
            "S_pair": (self.S_pair.shape, (self.n_pair_values,)),
            "S_onsite": (self.S_onsite.shape, (self.n_onsite_values,)),
        }
        if self.H_pair is not None or self.H_onsite is not None:
            if self.H_pair is None or self.H_onsite is None:
                raise MLHError("H_pair and H_onsite must both be present or both absent")
            n_spins = self.H_pair.shape[0]
            expect["H_pair"] = (self.H_pair.shape, (n_spins, self.n_pair_values))
            expect["H_onsite"] = (self.H_onsite.shape, (n_spins, self.n_onsite_values))
        if self.H0_pair is not None or self.H0_onsite is not None:
            if self.H0_pair is None or self.H0_onsite is None:
                raise MLHError("H0_pair and H0_onsite must both be present or both absent")
            n_spins = self.H0_pair.shape[0] if self.H_pair is None else self.H_pair.shape[0]
            expect["H0_pair"] = (self.H0_pair.shape, (n_spins, self.n_pair_values))
            expect["H0_onsite"] = (self.H0_onsite.shape, (n_spins, self.n_onsite_values))
        for name, (got, want) in expect.items():
            if tuple(got) != tuple(want):
                raise MLHError(f"{name} has shape {tuple(got)}, expected {tuple(want)}")
        if len(self.pair_i) and (
            self.pair_i.min() < 0 or max(self.pair_i.max(), self.pair_j.max()) >= n_atoms
        ):
            raise MLHError(f"pair atom indices outside 0..{n_atoms - 1}")
        if not canonical_pair_mask(self.pair_i, self.pair_j, self.pair_shift).all():
            raise MLHError("pairs must be stored once, as i < j or i == j with R > 0")
        nonperiodic_shift = self.pair_shift[:, ~self.pbc.astype(bool)]
        if np.any(nonperiodic_shift != 0):
            raise MLHError("pair shifts are non-zero along a non-periodic direction")
        self._check_onsite_symmetric()
        arrays = [self.positions, self.cell, self.S_pair, self.S_onsite]
        if self.H_pair is not None:
            arrays += [self.H_pair, self.H_onsite]
        if self.H0_pair is not None:
            arrays += [self.H0_pair, self.H0_onsite]
        if not all(np.isfinite(a).all() for a in arrays):
            raise MLHError("positions, cell, H, H0 or S contain NaN or infinite values")

    def _check_onsite_symmetric(self, tolerance: float = 1e-8) -> None:
        values = [("S", self.S_onsite)]
        if self.H_onsite is not None:
            values += [("H", h) for h in self.H_onsite]
        if self.H0_onsite is not None:
            values += [("H0", h) for h in self.H0_onsite]
        transpose = self._onsite_transpose_index
        for name, v in values:
            if len(v) and np.abs(v - v[transpose]).max() > tolerance * max(1.0, np.abs(v).max()):
                raise MLHError(f"on-site {name} blocks are not symmetric")

    @cached_property
    def _onsite_transpose_index(self) -> np.ndarray:
        """Permutation of on-site values that transposes every on-site block."""
        _, _, atom = self._onsite_coo
        n = self.orbital_counts[atom]
        start = self.onsite_value_offsets[atom]
        local = np.arange(self.n_onsite_values) - start
        return start + (local % n) * n + local // n

    # -------------------------------------------------------------- geometry
    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    @property
    def n_pairs(self) -> int:
        return len(self.pair_i)

    @property
    def n_spins(self) -> int:
        """Number of spin channels of H (0 for overlap-only records)."""
        return 0 if self.H_pair is None else self.H_pair.shape[0]

    @property
    def has_hamiltonian(self) -> bool:
        return self.H_pair is not None

    @cached_property
    def orbital_counts(self) -> np.ndarray:
        """(n_atoms,) number of orbitals per atom."""
        return self.basis.orbital_counts(self.numbers)

    @cached_property
    def orbital_offsets(self) -> np.ndarray:
        """(n_atoms + 1,) index of each atom's first orbital; last entry = n_orbitals."""
        return np.concatenate([[0], np.cumsum(self.orbital_counts)])

    @property
    def n_orbitals(self) -> int:
        return int(self.orbital_offsets[-1])

    @cached_property
    def pair_value_offsets(self) -> np.ndarray:
        """(n_pairs + 1,) start of each pair block in the *_pair arrays."""
        sizes = self.orbital_counts[self.pair_i] * self.orbital_counts[self.pair_j]
        return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @cached_property
    def onsite_value_offsets(self) -> np.ndarray:
        """(n_atoms + 1,) start of each on-site block in the *_onsite arrays."""
        return np.concatenate([[0], np.cumsum(self.orbital_counts**2)]).astype(np.int64)

    @property
    def n_pair_values(self) -> int:
        return int(self.pair_value_offsets[-1])

    @property
    def n_onsite_values(self) -> int:
        return int(self.onsite_value_offsets[-1])

    @property
    def pair_vectors(self) -> np.ndarray:
        """(n_pairs, 3) vectors tau_j + R @ cell - tau_i (Å)."""
        return (
            self.positions[self.pair_j]
            + self.pair_shift @ self.cell
            - self.positions[self.pair_i]
        )

    # ---------------------------------------------------------------- blocks
    def pair_block(self, values: np.ndarray, pair: int) -> np.ndarray:
        """Block of `pair` from a flat pair-value array (S_pair or H_pair[s])."""
        start, stop = self.pair_value_offsets[pair], self.pair_value_offsets[pair + 1]
        shape = (self.orbital_counts[self.pair_i[pair]], self.orbital_counts[self.pair_j[pair]])
        return values[start:stop].reshape(shape)

    def onsite_block(self, values: np.ndarray, atom: int) -> np.ndarray:
        """On-site block of `atom` from a flat on-site array (S_onsite or H_onsite[s])."""
        start, stop = self.onsite_value_offsets[atom], self.onsite_value_offsets[atom + 1]
        n = self.orbital_counts[atom]
        return values[start:stop].reshape(n, n)

    @cached_property
    def _pair_coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column (global orbital indices) and pair index of every pair value."""
        return block_coo(self.pair_i, self.pair_j, self.orbital_counts)

    @cached_property
    def _onsite_coo(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        atoms = np.arange(self.n_atoms)
        return block_coo(atoms, atoms, self.orbital_counts)

    # ------------------------------------------------------- Bloch matrices
    def _bloch(self, pair_values: np.ndarray, onsite_values: np.ndarray, k: np.ndarray | None):
        n = self.n_orbitals
        rows, cols, pair_of_value = self._pair_coo
        orow, ocol, _ = self._onsite_coo
        onsite = sp.coo_matrix((onsite_values, (orow, ocol)), shape=(n, n)).tocsr()
        # Repeated entries (several images R) are summed once in `upper`; adding its
        # transpose before the on-site part keeps H exactly symmetric (Hermitian).
        if k is None:
            upper = sp.coo_matrix((pair_values, (rows, cols)), shape=(n, n)).tocsr()
            return (onsite + (upper + upper.T)).tocsr()
        phase = np.exp(2j * np.pi * (self.pair_shift @ np.asarray(k, dtype=float)))
        upper = sp.coo_matrix((pair_values * phase[pair_of_value], (rows, cols)), shape=(n, n)).tocsr()
        return (onsite.astype(complex) + (upper + upper.conj().T)).tocsr()

    def overlap_k(self, k: np.ndarray | None = None) -> sp.csr_matrix:
        """Sparse S(k) = sum_R exp(2 pi i k.R) S(R); k reduced, None for the real Γ matrix."""
        return self._bloch(self.S_pair, self.S_onsite, k)

    def hamiltonian_k(self, k: np.ndarray | None = None, spin: int = 0) -> sp.csr_matrix:
        """Sparse H(k) in eV; k reduced, None for the real Γ matrix."""
        if self.H_pair is None:
            raise MLHError("this is an overlap-only record: it has no Hamiltonian")
        return self._bloch(self.H_pair[spin], self.H_onsite[spin], k)

    @property
    def has_baseline(self) -> bool:
        return self.H0_pair is not None

    def baseline_k(self, k: np.ndarray | None = None, spin: int = 0) -> sp.csr_matrix:
        """Sparse zeroth-step H0(k) in eV; k reduced, None for the real Γ matrix."""
        if self.H0_pair is None:
            raise MLHError("this record has no zeroth-step Hamiltonian H0")
        return self._bloch(self.H0_pair[spin], self.H0_onsite[spin], k)

    def baseline_as_hamiltonian(self) -> HamiltonianRecord:
        """The record with its baseline (H0, or the first-step B) in place of H (eV)."""
        if self.H0_pair is None:
            raise MLHError("this record has no zeroth-step Hamiltonian H0")
        return replace(self, H_pair=self.H0_pair, H_onsite=self.H0_onsite)


def block_coo(
    atom_i: np.ndarray, atom_j: np.ndarray, orbital_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global (row, col, block index) of every value of concatenated row-major blocks (i, j)."""
    orbital_offsets = np.concatenate([[0], np.cumsum(orbital_counts)])
    n_cols = orbital_counts[atom_j]
    sizes = orbital_counts[atom_i] * n_cols
    value_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    block = np.repeat(np.arange(len(atom_i)), sizes)
    local = np.arange(int(value_offsets[-1])) - value_offsets[block]
    rows = orbital_offsets[atom_i][block] + local // n_cols[block]
    cols = orbital_offsets[atom_j][block] + local % n_cols[block]
    return rows, cols, block
