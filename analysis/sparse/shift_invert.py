"""Γ-point pencils (H, S) of a record and shift-invert block Lanczos, sparse only.

Energies in eV. `SparsePencil` holds the Γ-point H (per spin) and S of a record on one
sparsity pattern with the symbolic LDLᵀ factorization that every shifted matrix
H - σS shares (`analysis.sparse.factor`). By Sylvester's law of inertia the number of
generalized eigenvalues below σ is the number of negative pivots of H - σS
(`eigenvalue_count`). `ShiftInvertLanczos` finds the eigenpairs nearest σ: they are the
dominant ones of T = (H - σS)⁻¹S, self-adjoint in the S inner product.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from analysis.sparse.factor import (
    LDLFactor,
    SingularPivotError,
    SymbolicFactor,
    factorize,
    symbolic_factor,
)
from mlh.errors import MLHError
from mlh.record.hamiltonian import HamiltonianRecord

__all__ = [
    "LANCZOS_BLOCK", "RITZ_TOLERANCE", "RESIDUAL_TOLERANCE", "SparsePencil", "sparse_pencil",
    "eigenvalue_count", "ShiftInvertLanczos", "rayleigh_quotients",
]

LANCZOS_BLOCK = 32
"""Vectors per block of the shift-invert Lanczos (one factor solve per block)."""

RITZ_TOLERANCE = 1e-9
"""A Ritz pair of T converges when its residual is below this times the largest |theta|
(the factor solves carry relative errors of ~1e-10, a floor for the residuals)."""

RESIDUAL_TOLERANCE = 1e-5
"""Largest accepted |H x - lambda S x| (eV, x S-normalised) of a returned eigenpair."""

_SHIFT_NUDGE = 1e-4
"""Move a shift by this (eV) when H - sigma S has a singular pivot block there."""


@dataclass(frozen=True, eq=False)
class SparsePencil:
    """Γ-point H (per spin) and S of a record on one sparsity pattern, with its ordering.

    Attributes:
        S: (N, N) CSR overlap.
        H: one (N, N) CSR Hamiltonian (eV) per spin channel, same pattern as S.
        symbolic: ordering and supernodes shared by every H - sigma S.
        factorizations: numeric factorizations done so far (a cost counter).
    """

    S: sp.csr_matrix
    H: tuple[sp.csr_matrix, ...]
    symbolic: SymbolicFactor
    factorizations: list[float] = field(default_factory=list)

    @property
    def n_orbitals(self) -> int:
        return self.S.shape[0]

    def factors(self, sigma: float, spins: tuple[int, ...] | None = None
                ) -> tuple[list[LDLFactor], float]:
        """LDLᵀ of H_s - sigma S for every spin s (or those in `spins`), and the shift used
        (nudged by 1e-4 eV steps off a point where a pivot block is singular)."""
        spins = tuple(range(len(self.H))) if spins is None else spins
        for attempt in range(4):
            shift = sigma + attempt * _SHIFT_NUDGE
            try:
                return [self._factor(shift, spin) for spin in spins], shift
            except SingularPivotError:
                continue
        raise MLHError(f"H - sigma S is singular near sigma = {sigma:.6f} eV")

    def _factor(self, shift: float, spin: int) -> LDLFactor:
        start = time.perf_counter()
        try:
            return factorize(self.symbolic, self.H[spin].data - shift * self.S.data)
        finally:
            self.factorizations.append(time.perf_counter() - start)


def _on_pattern(matrix: sp.csr_matrix, pattern: sp.csr_matrix) -> np.ndarray:
    """Values of `matrix` at the entries of `pattern` (zeros where it has none)."""
    n = pattern.shape[0]
    matrix = matrix.tocsr()
    matrix.sum_duplicates()
    key = lambda m: np.repeat(np.arange(n, dtype=np.int64), np.diff(m.indptr)) * n + m.indices
    values = np.zeros(pattern.nnz)
    values[np.searchsorted(key(pattern), key(matrix))] = matrix.data
    return values


def sparse_pencil(record: HamiltonianRecord) -> SparsePencil:
    """The record's Γ-point pencil and its symbolic factorization.

    Raises:
        MLHError: an overlap-only record.
    """
    if not record.has_hamiltonian:
        raise MLHError("this is an overlap-only record: it has no Hamiltonian")
    S = record.overlap_k(None)
    Hs = [record.hamiltonian_k(None, s) for s in range(record.n_spins)]
    if not all(np.isfinite(M.data).all() for M in (S, *Hs)):
        raise MLHError("H or S contains NaN or infinite values")
    if not np.all(S.diagonal() > 0):
        raise MLHError("S is not positive definite: its diagonal has entries <= 0")
    pattern = abs(S)
    for H in Hs:
        pattern = pattern + abs(H)
    pattern = pattern.tocsr()
    pattern.sort_indices()
    on_pattern = lambda values: sp.csr_matrix((values, pattern.indices, pattern.indptr),
                                              shape=pattern.shape)
    pairs = record.pair_i != record.pair_j
    graph = sp.coo_matrix((np.ones(pairs.sum()), (record.pair_i[pairs], record.pair_j[pairs])),
                          shape=(record.n_atoms, record.n_atoms))
    graph = (graph + graph.T).tocsr()
    symbolic = symbolic_factor(pattern, record.orbital_counts, graph)
    return SparsePencil(
        S=on_pattern(_on_pattern(S, pattern)),
        H=tuple(on_pattern(_on_pattern(H, pattern)) for H in Hs),
        symbolic=symbolic,
    )


def eigenvalue_count(record: HamiltonianRecord | SparsePencil, energy: float, spin: int = 0) -> int:
    """Number of generalized eigenvalues of (H, S) at Γ below `energy` (eV), by inertia.

    One LDLᵀ factorization of H - energy·S (of spin channel `spin`); should a pivot block
    be singular exactly there, the count is taken 1e-4 eV higher.
    """
    pencil = record if isinstance(record, SparsePencil) else sparse_pencil(record)
    if not 0 <= spin < len(pencil.H):
        raise MLHError(f"spin channel {spin} does not exist: the record has {len(pencil.H)}")
    factors, _ = pencil.factors(energy, spins=(spin,))
    return factors[0].n_negative


# ------------------------------------------------------------ shift-invert Lanczos
def _s_orthonormal(W: np.ndarray, SW: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W = V R with Vᵀ S V = 1; returns V, S V and R (directions below 1e-10 dropped)."""
    gram = W.T @ SW
    eig, U = np.linalg.eigh((gram + gram.T) / 2)
    if eig.size and eig.min() < -1e-8 * max(abs(eig.max()), 1e-300):
        raise MLHError("S is not positive definite (a negative S-norm in the Lanczos basis)")
    keep = eig > 1e-20 * max(eig.max(initial=0.0), 1e-300)
    root = np.sqrt(eig[keep])
    basis = U[:, keep] / root
    return W @ basis, SW @ basis, (U[:, keep] * root).T


@dataclass
class ShiftInvertLanczos:
    """Block Lanczos on T = (H - sigma S)⁻¹ S in the S inner product, full reorthogonalization.

    Each `extend` costs one factor solve with `block` right-hand sides, one S product and
    the reorthogonalization against the basis (2 classical Gram-Schmidt passes). `ritz`
    gives the Rayleigh-Ritz pairs of T in the basis; Ritz values theta of T are
    eigenvalues sigma + 1/theta of (H, S), nearest sigma first to converge. Eigenvectors
    already known (`locked`, S-orthonormal) are projected out, so only new ones appear.
    Memory: two (N, max_size) arrays.

    Attributes:
        factor: LDLᵀ of H - sigma S.
        S: overlap, on the pencil's pattern.
        sigma: the shift (eV).
        locked: (N, p) known S-orthonormal eigenvectors (may be p = 0).
        rng: source of the random start block.
        block: vectors per block.
        max_size: largest basis.
    """

    factor: LDLFactor
    S: sp.csr_matrix
    sigma: float
    locked: np.ndarray
    rng: np.random.Generator
    block: int = LANCZOS_BLOCK
    max_size: int = 2000

    def __post_init__(self) -> None:
        n = self.S.shape[0]
        available = n - self.locked.shape[1]
        self.block = max(1, min(self.block, available // 2))
        self.max_size = max(0, min(self.max_size, available))
        self.S_locked = self.S @ self.locked
        self.Q = np.empty((n, self.max_size + self.block))
        self.SQ = np.empty_like(self.Q)
        self.T = np.zeros((self.Q.shape[1], self.Q.shape[1]))
        self.size = 0
        start = self._deflate(self.rng.standard_normal((n, self.block)))
        self.next, self.S_next, _ = _s_orthonormal(start, self.S @ start)

    def _deflate(self, W: np.ndarray) -> np.ndarray:
        if self.locked.shape[1]:
            W -= self.locked @ (self.S_locked.T @ W)
        return W

    def extend(self) -> bool:
        """Add one block to the Krylov basis; False when the basis is full or exhausted."""
        k, b = self.size, self.next.shape[1]
        if b == 0 or k + b > self.max_size:
            return False
        self.Q[:, k:k + b], self.SQ[:, k:k + b] = self.next, self.S_next
        k = self.size = k + b
        W = self.factor.solve(self.S_next)
        coefficients = np.zeros((k, b))
        for _ in range(2):  # classical Gram-Schmidt, twice
            W = self._deflate(W)
            c = self.SQ[:, :k].T @ W
            W -= self.Q[:, :k] @ c
            coefficients += c
        self.T[:k, k - b:k] = coefficients
        self.next, self.S_next, R = _s_orthonormal(W, self.S @ W)
        self.T[k:k + len(R), k - b:k] = R
        self.residual_block = R
        return True

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energies sigma + 1/theta, convergence flags and coefficient vectors of all Ritz pairs."""
        k = self.size
        if k == 0:
            return np.zeros(0), np.zeros(0, dtype=bool), np.zeros((0, 0))
        b = self.residual_block.shape[1]
        T = self.T[:k, :k]
        theta, Y = np.linalg.eigh((T + T.T) / 2)
        residual = np.linalg.norm(self.residual_block @ Y[k - b:], axis=0)
        converged = residual <= RITZ_TOLERANCE * np.abs(theta).max()
        with np.errstate(divide="ignore"):
            energies = self.sigma + 1.0 / theta
        return energies, converged, Y

    def vectors(self, Y: np.ndarray) -> np.ndarray:
        return self.Q[:, :self.size] @ Y


def rayleigh_quotients(pencil: SparsePencil, spin: int, X: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rayleigh quotients x·Hx (eV), residual norms |Hx - λSx| (eV) and the S-normalised
    vectors x of the columns of X (approximate eigenvectors of spin channel `spin`)."""
    SX = pencil.S @ X
    norms = np.sqrt(np.einsum("ij,ij->j", X, SX))
    X, SX = X / norms, SX / norms
    HX = pencil.H[spin] @ X
    energies = np.einsum("ij,ij->j", X, HX)
    residual = np.linalg.norm(HX - SX * energies, axis=0)
    return energies, residual, X
