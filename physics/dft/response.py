"""Linear response of the Fermi-Dirac density matrix to its Hamiltonian and overlap.

For rho_s(k) = g sum_n f((eps_n - mu) / kT) c_n c_n^H of (H_s(k), S(k)) at a fixed electron
count (mu moves with H and S) and a constant matrix A_s(k), this gives the gradients of

    L(H, S) = sum_s,k w_k Re Tr[A_s(k) rho_s(k)]

in the same convention as rho: dL = sum_s,k w_k Re Tr[G_H,s(k) dH_s(k)]
+ sum_k w_k Re Tr[G_S(k) dS(k)]. The formula is first-order perturbation theory in the
eigenbasis with divided differences of the occupations,

    d rho' = g [D1 o dH' - D2 o dS' - dmu diag(f')],   X' = C^H X C,
    D1_ij = (f_i - f_j) / (eps_i - eps_j),  D2_ij = (f_i eps_i - f_j eps_j) / (eps_i - eps_j),

whose limits at equal eigenvalues (f' and f + eps f') make it exact at degenerate levels;
dmu keeps the electron count (metals included). The DFT-functional route uses it for the
response term Tr[H[n_out] d rho/dR] of its forces (physics.dft.forces).

Units: H, S, A as given (eV for H); gradients per unit of H (electrons) and of S (eV for
A in eV).
"""

from __future__ import annotations

import numpy as np

from mlh.errors import MLHError
from physics.density_matrix import generalized_eigh
from physics.occupations import fermi_dirac, find_fermi_level

__all__ = ["density_matrix_gradients", "DEGENERACY_TOLERANCE"]

DEGENERACY_TOLERANCE = 1e-6
"""Eigenvalue differences (eV) below which divided differences take their limit."""


def _divided_differences(eig: np.ndarray, f: np.ndarray, df: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """D1 and D2 of one (k, spin): divided differences of f and of f * eps."""
    difference = eig[:, None] - eig[None, :]
    close = np.abs(difference) < DEGENERACY_TOLERANCE
    safe = np.where(close, 1.0, difference)
    fe = f * eig
    mean_df = 0.5 * (df[:, None] + df[None, :])
    mean_eig = 0.5 * (eig[:, None] + eig[None, :])
    mean_f = 0.5 * (f[:, None] + f[None, :])
    D1 = np.where(close, mean_df, (f[:, None] - f[None, :]) / safe)
    D2 = np.where(close, mean_f + mean_eig * mean_df, (fe[:, None] - fe[None, :]) / safe)
    return D1, D2


def density_matrix_gradients(
    H_skMM: np.ndarray,
    S_kMM: np.ndarray,
    A_skMM: np.ndarray,
    kpoint_weights: np.ndarray,
    n_electrons: float,
    width: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients G_H (per spin and k) and G_S (per k) of L = sum w_k Re Tr[A rho(H, S)].

    Args:
        H_skMM: (n_spins, n_k, N, N) Hermitian Hamiltonians (eV); n_spins 1 (g = 2) or 2.
        S_kMM: (n_k, N, N) overlaps, positive definite.
        A_skMM: (n_spins, n_k, N, N) Hermitian constant matrices (eV).
        kpoint_weights: (n_k,) weights summing to 1.
        n_electrons: electrons placed (fixed).
        width: Fermi-Dirac width kT (eV).

    Returns:
        G_H (n_spins, n_k, N, N) and G_S (n_k, N, N), Hermitian, such that dL = sum_s,k
        w_k Re Tr[G_H dH] + sum_k w_k Re Tr[G_S dS] (real for real input).

    Raises:
        MLHError: mismatching shapes, or H/S that generalized_eigh refuses.
    """
    n_spins, n_k, N = H_skMM.shape[0], H_skMM.shape[1], H_skMM.shape[-1]
    if A_skMM.shape != H_skMM.shape or S_kMM.shape != (n_k, N, N) or len(kpoint_weights) != n_k:
        raise MLHError(f"shapes do not match: H {H_skMM.shape}, S {S_kMM.shape}, "
                       f"A {A_skMM.shape}, {len(kpoint_weights)} weights")
    g = 2.0 if n_spins == 1 else 1.0
    eig = np.empty((n_spins, n_k, N))
    vectors = {}
    for s in range(n_spins):
        for k in range(n_k):
            eig[s, k], vectors[s, k] = generalized_eigh(H_skMM[s, k], S_kMM[k],
                                                        f"at k-point {k}, spin {s}")
    state_weights = np.broadcast_to(g * np.asarray(kpoint_weights)[None, :, None], eig.shape)
    mu = find_fermi_level(eig.ravel(), state_weights.ravel(), n_electrons, width)
    f = fermi_dirac(eig, mu, width)
    df = -f * (1.0 - f) / width  # df/deps

    dtype = np.result_type(H_skMM.dtype, S_kMM.dtype, A_skMM.dtype, np.float64)
    G_H = np.zeros((n_spins, n_k, N, N), dtype)
    G_S = np.zeros((n_k, N, N), dtype)
    A_diagonal = np.empty_like(eig)
    for (s, k), C in vectors.items():
        A_prime = C.conj().T @ A_skMM[s, k] @ C
        A_diagonal[s, k] = A_prime.diagonal().real
        D1, D2 = _divided_differences(eig[s, k], f[s, k], df[s, k])
        G_H[s, k] = g * (C @ (A_prime * D1) @ C.conj().T)
        G_S[k] -= g * (C @ (A_prime * D2) @ C.conj().T)

    # the Fermi level moves so that the electron count stays fixed
    capacity = float(np.sum(state_weights * df))
    if capacity != 0.0:
        shift = float(np.sum(state_weights * df * A_diagonal)) / capacity
        for (s, k), C in vectors.items():
            G_H[s, k] -= g * shift * ((C * df[s, k]) @ C.conj().T)
            G_S[k] += g * shift * ((C * (df[s, k] * eig[s, k])) @ C.conj().T)
    return G_H, G_S
