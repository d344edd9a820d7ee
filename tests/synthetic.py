"""Synthetic records with random blocks for tests that need no GPAW run."""

from __future__ import annotations

import numpy as np

from mlh.record.basis import Basis, SpeciesBasis
from mlh.record.hamiltonian import HamiltonianRecord, Labels
from mlh.record.realspace import image_pairs

SPECIES = {
    1: SpeciesBasis(1, (0, 1), (3.0, 3.0), ("1s", "p pol")),
    8: SpeciesBasis(8, (0, 1, 2), (2.5, 2.8, 2.8), ("2s", "2p", "d pol")),
    74: SpeciesBasis(74, (0, 2, 1), (4.0, 3.5, 4.0), ("6s", "5d", "p pol")),
}


def random_record(
    seed: int, n_atoms: int = 4, periodic: bool = True, n_spins: int = 1, cell_length: float = 4.0
) -> HamiltonianRecord:
    """A record with random symmetric on-site blocks and random pair blocks."""
    rng = np.random.default_rng(seed)
    numbers = rng.choice(sorted(SPECIES), size=n_atoms)
    cell = np.diag([cell_length, cell_length * 1.1, cell_length * 1.2]) + rng.normal(0, 0.2, (3, 3))
    positions = rng.uniform(0, 1, (n_atoms, 3)) @ cell
    pbc = np.array([periodic] * 3)
    basis = Basis("test", tuple(SPECIES[z] for z in sorted(set(numbers.tolist()))))
    reach = basis.rcut_per_atom(numbers)
    pair_i, pair_j, pair_shift = image_pairs(positions, cell, pbc, reach)
    counts = basis.orbital_counts(numbers)
    n_pair_values = int((counts[pair_i] * counts[pair_j]).sum())
    onsite = []
    for n in counts:
        block = rng.normal(size=(n, n))
        onsite.append(block + block.T)
    onsite_values = np.concatenate([b.ravel() for b in onsite])
    s_onsite = np.concatenate([(np.eye(n) + 0.01 * (b + b.T)).ravel() for n, b in
                               zip(counts, onsite)])
    return HamiltonianRecord(
        numbers=numbers,
        positions=positions,
        cell=cell,
        pbc=pbc,
        ghost=rng.uniform(size=n_atoms) < 0.2,
        basis=basis,
        pair_i=pair_i,
        pair_j=pair_j,
        pair_shift=pair_shift,
        S_pair=0.01 * rng.normal(size=n_pair_values),
        S_onsite=s_onsite,
        H_pair=rng.normal(size=(n_spins, n_pair_values)),
        H_onsite=np.stack([onsite_values * (s + 1) for s in range(n_spins)]),
        labels=Labels(energy=float(rng.normal()), forces=rng.normal(size=(n_atoms, 3)),
                      fermi_level=-3.0, n_electrons=8.0,
                      kpoints=np.zeros((1, 3)), kpoint_weights=np.ones(1),
                      eigenvalues=rng.normal(size=(n_spins, 1, 5))),
        provenance={"code": "synthetic", "seed": seed, "h": 0.2},
    )


def dense_bloch_reference(record: HamiltonianRecord, values_pair, values_onsite, k) -> np.ndarray:
    """H(k) by an explicit loop over stored pairs and their transposed partners."""
    n = record.n_orbitals
    out = np.zeros((n, n), complex)
    off = record.orbital_offsets
    for a in range(record.n_atoms):
        sl = slice(off[a], off[a + 1])
        out[sl, sl] += record.onsite_block(values_onsite, a)
    for p in range(record.n_pairs):
        i, j = record.pair_i[p], record.pair_j[p]
        block = record.pair_block(values_pair, p)
        phase = np.exp(2j * np.pi * record.pair_shift[p] @ k)
        out[off[i]:off[i + 1], off[j]:off[j + 1]] += block * phase
        out[off[j]:off[j + 1], off[i]:off[i + 1]] += block.T * np.conj(phase)
    return out
