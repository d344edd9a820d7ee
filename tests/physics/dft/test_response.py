"""Gradients of Tr[A rho(H, S)] against finite differences (metals, gaps, degeneracies)."""

import numpy as np
import pytest

from physics.density_matrix import density_matrices
from physics.dft.response import density_matrix_gradients


def _hermitian(rng, n, complex_):
    X = rng.normal(size=(n, n)) + (1j * rng.normal(size=(n, n)) if complex_ else 0)
    return 0.5 * (X + X.conj().T)


def _system(rng, n_spins, n_k, N, complex_, degenerate):
    H = np.stack([np.stack([_hermitian(rng, N, complex_) for _ in range(n_k)])
                  for _ in range(n_spins)])
    S = np.stack([np.eye(N) + 0.1 * _hermitian(rng, N, complex_) for _ in range(n_k)])
    if degenerate:  # a three-fold level of (H, S) in every block: H = L Q diag(eps) Q^T L^T
        eps = np.sort(rng.normal(size=N))
        eps[3:6] = eps[3]
        for s in range(n_spins):
            for k in range(n_k):
                Q, _ = np.linalg.qr(rng.normal(size=(N, N)))
                L = np.linalg.cholesky(S[k])
                H[s, k] = L @ (Q * eps) @ Q.T @ L.T
    A = np.stack([np.stack([_hermitian(rng, N, complex_) for _ in range(n_k)])
                  for _ in range(n_spins)])
    return H, S, A


def _objective(H, S, A, weights, n_electrons, width):
    dm = density_matrices(H, S, n_electrons, kpoints=np.zeros((len(weights), 3)) + np.arange(
        len(weights))[:, None] * 0.1, kpoint_weights=weights, width=width)
    return dm.trace_with(A)


@pytest.mark.parametrize("n_spins,complex_,width,degenerate", [
    (1, False, 0.3, False),   # metal-like smearing, real (Γ)
    (1, True, 0.05, False),   # complex k-points
    (2, True, 0.2, False),    # spin-polarised
    (1, False, 0.01, True),   # degenerate levels, narrow smearing
])
def test_gradients_match_finite_differences(n_spins, complex_, width, degenerate):
    rng = np.random.default_rng(7)
    N, n_k = 9, 2
    weights = np.array([0.25, 0.75])
    n_electrons = 7.3 if n_spins == 1 else 6.6
    H, S, A = _system(rng, n_spins, n_k, N, complex_, degenerate)
    G_H, G_S = density_matrix_gradients(H, S, A, weights, n_electrons, width)
    assert np.allclose(G_H, np.swapaxes(G_H, -1, -2).conj())
    assert np.allclose(G_S, np.swapaxes(G_S, -1, -2).conj())
    dH = np.stack([np.stack([_hermitian(rng, N, complex_) for _ in range(n_k)])
                   for _ in range(n_spins)])
    dS = 0.1 * np.stack([_hermitian(rng, N, complex_) for _ in range(n_k)])
    predicted = sum(weights[k] * np.vdot(G_H[s, k].conj().T, dH[s, k]).real
                    for s in range(n_spins) for k in range(n_k))
    predicted += sum(weights[k] * np.vdot(G_S[k].conj().T, dS[k]).real for k in range(n_k))
    t = 1e-5
    plus = _objective(H + t * dH, S + t * dS, A, weights, n_electrons, width)
    minus = _objective(H - t * dH, S - t * dS, A, weights, n_electrons, width)
    assert predicted == pytest.approx((plus - minus) / (2 * t), rel=1e-5, abs=1e-7)
