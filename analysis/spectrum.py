"""Dense spectra: eigenpairs of (H(k), S(k)) with Mulliken weights on (atom, l) channels.

Energies in eV, k-points in reduced coordinates. For a state n with S-normalised
coefficients C_{mu n} the Mulliken weight of channel (a, l) is

    p_n(a, l) = sum_{mu in (a, l)} Re[ conj(C_{mu n}) (S C)_{mu n} ],

and sum over all channels of p_n = C_n^H S C_n = 1. Dense diagonalisation costs
O(N^3) per k-point and spin (N orbitals): up to ~10,000 orbitals on this machine;
larger structures take the sparse route of `analysis.sparse.window`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from analysis.projected import ProjectedSpectrum
from mlh.errors import MLHError
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.kpoints import kpoints_and_weights
from physics.density_matrix import generalized_eigh
from physics.occupations import find_fermi_level, record_electron_count

__all__ = ["orbital_channels", "generalized_eigh", "mulliken_projections", "dense_spectrum"]

_STATE_CHUNK = 512
"""States per block when forming S C (bounds the extra memory to N x 512 values)."""


def orbital_channels(record: HamiltonianRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (atom, l) channel of every orbital.

    Returns:
        channel_M: (n_orbitals,) channel index of each orbital.
        channel_atom: (n_channels,) atom of each channel.
        channel_l: (n_channels,) angular momentum of each channel.
        Channels are ordered by atom, then by l.
    """
    channel_M, channel_atom, channel_l = [], [], []
    for atom, number in enumerate(record.numbers):
        ls = record.basis.for_number(int(number)).ls
        orbital_l = np.repeat(ls, [2 * l + 1 for l in ls])
        present = np.unique(orbital_l)
        channel_M.append(len(channel_atom) + np.searchsorted(present, orbital_l))
        channel_atom.extend([atom] * len(present))
        channel_l.extend(present.tolist())
    return (np.concatenate(channel_M).astype(np.int64), np.array(channel_atom, np.int64),
            np.array(channel_l, np.int64))


def mulliken_projections(
    C_Mn: np.ndarray, S_MM: np.ndarray, channel_M: np.ndarray, n_channels: int
) -> np.ndarray:
    """(n_states, n_channels) Mulliken weights p_n(c) = sum_{mu in c} Re[conj(C) (S C)]_{mu n}."""
    n_orbitals, n_states = C_Mn.shape
    to_channel = sp.csr_matrix(
        (np.ones(n_orbitals), (np.arange(n_orbitals), channel_M)), shape=(n_orbitals, n_channels)
    )
    projections = np.empty((n_states, n_channels))
    for start in range(0, n_states, _STATE_CHUNK):
        C = C_Mn[:, start:start + _STATE_CHUNK]
        weight_Mn = (C.conj() * (S_MM @ C)).real
        projections[start:start + _STATE_CHUNK] = (to_channel.T @ weight_Mn).T
    return projections


def dense_spectrum(
    record: HamiltonianRecord,
    kpoints: np.ndarray | None = None,
    kpoint_weights: np.ndarray | None = None,
    n_electrons: float | None = None,
    charge: float = 0.0,
    width: float = 0.01,
    spin: int | None = None,
) -> ProjectedSpectrum:
    """All eigenstates of (H(k), S(k)) by dense diagonalisation, with E_F and Mulliken weights.

    Args:
        record: a record with H (any number of spin channels).
        kpoints: (n_k, 3) reduced k-points (e.g. a time-reversal-reduced grid); None for Γ
            only, solved as a real problem.
        kpoint_weights: (n_k,) weights, normalised here to sum 1; default equal.
        n_electrons: valence electrons of the neutral structure; default
            record.labels.n_electrons.
        charge: net charge (e); the Fermi level places n_electrons - charge electrons.
        width: Fermi-Dirac width (eV) for the Fermi level (0.01 eV, as the GPAW data).
        spin: keep only the states of this spin channel (E_F still from all channels);
            None keeps all.

    Returns:
        ProjectedSpectrum with method "dense" and energy_range (-inf, inf). State weights
        are 2 w_k for one spin channel, w_k per channel for two.

    Raises:
        MLHError: overlap-only record, no electron count, bad k-points, H not finite or not
            Hermitian, S not positive definite, an electron count the states cannot hold,
            or a spin channel the record does not have.
    """
    if not record.has_hamiltonian:
        raise MLHError("this is an overlap-only record: it has no Hamiltonian to diagonalise")
    n_electrons = record_electron_count(record, n_electrons)
    n_spins = record.n_spins
    if spin is not None and not 0 <= spin < n_spins:
        raise MLHError(f"spin channel {spin} does not exist: the record has {n_spins}")
    kpoints, weights = kpoints_and_weights(kpoints, kpoint_weights)
    channel_M, channel_atom, channel_l = orbital_channels(record)

    energies, state_weights, spins, kpoint_index, projections = [], [], [], [], []
    for k_index, k in enumerate(kpoints):
        bloch_k = k if np.any(k) else None  # Γ: real matrices
        S = record.overlap_k(bloch_k).toarray()
        for s in range(n_spins):
            where = f"at k-point {k_index} {tuple(k)}, spin {s}"
            eig_n, C_Mn = generalized_eigh(record.hamiltonian_k(bloch_k, s).toarray(), S, where)
            energies.append(eig_n)
            state_weights.append(np.full(len(eig_n), weights[k_index] * 2 / n_spins))
            spins.append(np.full(len(eig_n), s))
            kpoint_index.append(np.full(len(eig_n), k_index))
            projections.append(mulliken_projections(C_Mn, S, channel_M, len(channel_atom)))

    energies, state_weights = np.concatenate(energies), np.concatenate(state_weights)
    placed = float(n_electrons) - float(charge)
    fermi_level = find_fermi_level(energies, state_weights, placed, width)
    spins = np.concatenate(spins)
    keep = slice(None) if spin is None else spins == spin
    return ProjectedSpectrum(
        energies=energies[keep],
        state_weights=state_weights[keep],
        spin=spins[keep],
        kpoint=np.concatenate(kpoint_index)[keep],
        kpoints=kpoints,
        projections=np.concatenate(projections)[keep],
        channel_atom=channel_atom,
        channel_l=channel_l,
        numbers=np.asarray(record.numbers).copy(),
        cell=np.asarray(record.cell, dtype=float).copy(),
        pbc=np.asarray(record.pbc, dtype=bool).copy(),
        fermi_level=fermi_level,
        n_electrons=placed,
        electrons_below=0.0,
        method="dense",
        energy_range=(-np.inf, np.inf),
    )
