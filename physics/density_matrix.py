"""Density matrices from (H, S): occupations, rho and the energy-weighted W (Mulliken
charges from them: physics.mulliken).

Units: energies and widths in eV, k-points in reduced (fractional) coordinates, S and
density matrices dimensionless (electrons). Conventions follow mlh.record.hamiltonian:
H(k) = sum_R exp(+2 pi i k.R) H(R), and for each k-point and spin channel s

    H(k) c_n = eps_n S(k) c_n,              c_n^H S(k) c_n = 1,
    rho_s(k) = g sum_n f_n c_n c_n^H,        W_s(k) = g sum_n f_n eps_n c_n c_n^H,

with f_n = 1 / (1 + exp((eps_n - E_F) / width)) the Fermi-Dirac occupation, g = 2 for a
spin-paired H (one channel) and g = 1 per channel of a spin-polarised one. Then

    N = sum_s sum_k w_k Tr[rho_s(k) S(k)],   E_band = sum_s sum_k w_k Tr[rho_s(k) H_s(k)],

with k-point weights w_k summing to 1. The k-points must be a full grid or a grid reduced
by time reversal only (k and -k merged, weight doubled), as mlh's GPAW records use; a
point-group-reduced set would need symmetrised density matrices, which this module does
not do. Occupations depend on the energies only, so degenerate states are always equally
occupied and rho, W do not depend on how a degenerate subspace is rotated.

Mermin free energy of the electrons: A = E_band + (-T S) with T S = width * S and

    -T S = width * sum_s sum_k w_k g sum_n [f_n ln f_n + (1 - f_n) ln(1 - f_n)]   (<= 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from mlh.errors import MLHError
from mlh.gpaw.record_settings import DEFAULT_WIDTH, record_smearing_width
from mlh.record.hamiltonian import HamiltonianRecord, block_coo
from mlh.record.kpoints import kpoints_and_weights
from physics.occupations import (
    fermi_dirac,
    find_fermi_level,
    record_electron_count,
)

__all__ = [
    "DensityMatrices", "density_matrices", "density_matrices_for_record", "generalized_eigh",
    "orbital_atoms", "density_matrix_blocks", "kspace_blocks", "as_matrix_stack",
    "HERMITIAN_TOLERANCE", "OCCUPATION_CUTOFF",
]

HERMITIAN_TOLERANCE = 1e-8
"""Largest |H - H^H| (and |S - S^H|) relative to max(1, max |H|) accepted as Hermitian."""

OCCUPATION_CUTOFF = 1e-15
"""States with f below this are left out of rho and W (their sum is < N * 1e-15 electrons)."""


@dataclass(frozen=True, eq=False)
class DensityMatrices:
    """Occupied-state density matrices of one structure on a k-point set.

    Attributes:
        kpoints: (n_k, 3) reduced k-points.
        kpoint_weights: (n_k,) weights summing to 1.
        eigenvalues: (n_spins, n_k, N) eigenvalues eps_n, ascending (eV).
        occupations: (n_spins, n_k, N) Fermi-Dirac occupations f_n in [0, 1].
        rho: (n_spins, n_k, N, N) rho_s(k) = g sum_n f_n c_n c_n^H (electrons; real for a
            real problem, complex otherwise).
        energy_weighted: (n_spins, n_k, N, N) W_s(k) = g sum_n f_n eps_n c_n c_n^H (eV).
        fermi_level: E_F (eV).
        width: Fermi-Dirac width = k_B T (eV).
        n_electrons: electrons placed (valence electrons minus charge).
        band_energy: E_band = sum_s,k w_k g sum_n f_n eps_n (eV).
        entropy_energy: -T S of the occupations (eV, <= 0).
    """

    kpoints: np.ndarray
    kpoint_weights: np.ndarray
    eigenvalues: np.ndarray
    occupations: np.ndarray
    rho: np.ndarray
    energy_weighted: np.ndarray
    fermi_level: float
    width: float
    n_electrons: float
    band_energy: float
    entropy_energy: float

    @property
    def n_spins(self) -> int:
        return self.rho.shape[0]

    @property
    def n_kpoints(self) -> int:
        return self.rho.shape[1]

    @property
    def n_orbitals(self) -> int:
        return self.rho.shape[-1]

    @property
    def spin_degeneracy(self) -> int:
        """g: electrons per fully occupied state and k-point weight (2 spin-paired, 1 else)."""
        return 2 if self.n_spins == 1 else 1

    @property
    def band_free_energy(self) -> float:
        """Mermin free energy of the bands, E_band - T S (eV)."""
        return self.band_energy + self.entropy_energy

    def electron_count(self, S_kMM: np.ndarray) -> float:
        """sum_s,k w_k Re Tr[rho_s(k) S(k)] (electrons); S_kMM: (n_k, N, N) or (N, N)."""
        S_kMM = as_matrix_stack(S_kMM, 3, "S")
        return float(sum(
            self.kpoint_weights[k] * np.vdot(S_kMM[k].conj().T, self.rho[s, k]).real
            for s in range(self.n_spins) for k in range(self.n_kpoints)
        ))

    def trace_with(self, H_skMM: np.ndarray) -> float:
        """sum_s,k w_k Re Tr[rho_s(k) H_s(k)] (eV).

        H_skMM: (n_spins, n_k, N, N), or with fewer leading axes; an H with one spin
        channel is used for every channel of rho.
        """
        H_skMM = as_matrix_stack(H_skMM, 4, "H")
        return float(sum(
            self.kpoint_weights[k] * np.vdot(H_skMM[min(s, len(H_skMM) - 1), k].conj().T,
                                             self.rho[s, k]).real
            for s in range(self.n_spins) for k in range(self.n_kpoints)
        ))


# ------------------------------------------------------------------ eigen-decomposition
def generalized_eigh(
    H: np.ndarray, S: np.ndarray, where: str = "", eigvals_only: bool = False
) -> tuple[np.ndarray, np.ndarray] | np.ndarray:
    """Eigenpairs of H C = S C diag(eig) for dense Hermitian H (eV) and S.

    Args:
        H, S: (N, N) real symmetric or complex Hermitian matrices.
        where: context for error messages, e.g. "at k-point 3, spin 0".
        eigvals_only: return only the eigenvalues (faster).

    Returns:
        eig_n (N,) ascending eigenvalues (eV) and C_Mn (N, N) S-normalised eigenvectors
        (columns), from scipy.linalg.eigh(H, S, driver="gvd"); eig_n alone with
        `eigvals_only`.

    Raises:
        MLHError: H or S not finite, not square or not Hermitian, or S not positive
            definite (Cholesky failure).
    """
    context = f" {where}" if where else ""
    for name, A in (("H", H), ("S", S)):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise MLHError(f"{name}{context} must be a square matrix, got shape {A.shape}")
        if not np.isfinite(A).all():
            raise MLHError(f"{name}{context} contains NaN or infinite values")
        scale, asymmetry = _size_and_asymmetry(A)
        if asymmetry > HERMITIAN_TOLERANCE * max(1.0, scale):
            unit = " eV" if name == "H" else ""
            raise MLHError(
                f"{name}{context} is not {'symmetric' if np.isrealobj(A) else 'Hermitian'} "
                f"(max |{name} - {name}^H| = {asymmetry:.3g}{unit})")
    if H.shape != S.shape:
        raise MLHError(f"H{context} has shape {H.shape} but S has {S.shape}")
    try:
        return scipy.linalg.eigh(H, S, eigvals_only=eigvals_only, driver="gvd", check_finite=False)
    except np.linalg.LinAlgError as err:
        raise MLHError(f"S{context} is not positive definite (Cholesky failed: {err})") from None


def _size_and_asymmetry(A: np.ndarray, rows_per_block: int = 512) -> tuple[float, float]:
    """max |A| and max |A - A^H|, by row blocks (no N x N temporaries)."""
    scale = asymmetry = 0.0
    for start in range(0, len(A), rows_per_block):
        rows, columns = A[start:start + rows_per_block], A[:, start:start + rows_per_block]
        scale = max(scale, float(np.abs(rows).max()))
        asymmetry = max(asymmetry, float(np.abs(rows - columns.conj().T).max()))
    return scale, asymmetry


def as_matrix_stack(A, ndim: int, name: str) -> np.ndarray:
    """A dense array with leading axes added up to `ndim` axes (sparse matrices densified)."""
    if sp.issparse(A):
        A = A.toarray()
    A = np.asarray(A)
    if A.dtype.kind not in "fc":
        A = A.astype(float)
    if A.ndim < 2 or A.ndim > ndim or A.shape[-1] != A.shape[-2]:
        raise MLHError(f"{name} must be square matrices with at most {ndim} axes, got {A.shape}")
    return A.reshape((1,) * (ndim - A.ndim) + A.shape)


def _entropy_term(f: np.ndarray) -> np.ndarray:
    """f ln f + (1 - f) ln(1 - f), zero at f = 0 and f = 1 (dimensionless, <= 0)."""
    f = np.clip(f, 0.0, 1.0)
    g = 1.0 - f
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(f > 0, f * np.log(np.where(f > 0, f, 1.0)), 0.0)
        out += np.where(g > 0, g * np.log(np.where(g > 0, g, 1.0)), 0.0)
    return out


def density_matrices(
    H_skMM: np.ndarray,
    S_kMM: np.ndarray,
    n_electrons: float,
    kpoints: np.ndarray | None = None,
    kpoint_weights: np.ndarray | None = None,
    width: float = DEFAULT_WIDTH,
    charge: float = 0.0,
) -> DensityMatrices:
    """Fermi-Dirac density matrices of (H, S) on a k-point set.

    Args:
        H_skMM: (n_spins, n_k, N, N), (n_k, N, N) or (N, N) Hamiltonians (eV); n_spins is
            1 (spin-paired) or 2. Real matrices are solved as real problems (Γ).
        S_kMM: (n_k, N, N) or (N, N) overlaps, positive definite.
        n_electrons: valence electrons of the neutral structure.
        kpoints: (n_k, 3) reduced k-points (full grid or time-reversal reduced); None
            for a single Γ point.
        kpoint_weights: (n_k,) weights, normalised here; None for equal weights.
        width: Fermi-Dirac width (eV), > 0.
        charge: net charge (e); n_electrons - charge electrons are placed.

    Returns:
        DensityMatrices with E_F found by bisection on the electron count
        (physics.occupations.find_fermi_level; midgap in a gap wider than the smearing).

    Raises:
        MLHError: NaN/non-Hermitian H or S, S not positive definite, inconsistent shapes
            or k-points, a non-positive width, or an electron count the basis cannot hold.
    """
    H_skMM = as_matrix_stack(H_skMM, 4, "H")
    S_kMM = as_matrix_stack(S_kMM, 3, "S")
    n_spins, n_k, N = H_skMM.shape[0], H_skMM.shape[1], H_skMM.shape[-1]
    if n_spins not in (1, 2):
        raise MLHError(f"H has {n_spins} spin channels; 1 or 2 are supported")
    if S_kMM.shape != (n_k, N, N):
        raise MLHError(f"S has shape {S_kMM.shape}, expected {(n_k, N, N)} to match H")
    kpoints, weights = kpoints_and_weights(kpoints, kpoint_weights, n_k)
    if not (np.isfinite(width) and width > 0):
        raise MLHError(f"the Fermi-Dirac width must be positive, got {width} eV")
    if not np.isfinite(n_electrons) or not np.isfinite(charge):
        raise MLHError(f"the electron count {n_electrons} or charge {charge} is not finite")
    placed = float(n_electrons) - float(charge)
    degeneracy = 2 if n_spins == 1 else 1
    capacity = degeneracy * n_spins * N
    if not 0 < placed < capacity:
        raise MLHError(
            f"{placed:g} electrons cannot be placed in {N} orbitals x {n_spins} spin "
            f"channel(s): the basis holds 0 to {capacity} electrons (exclusive)")

    eig_skn = np.empty((n_spins, n_k, N))
    vectors: dict[tuple[int, int], np.ndarray] = {}
    for s in range(n_spins):
        for k in range(n_k):
            where = f"at k-point {k} {tuple(np.round(kpoints[k], 6))}, spin {s}"
            eig_skn[s, k], vectors[s, k] = generalized_eigh(H_skMM[s, k], S_kMM[k], where)

    state_weights = np.broadcast_to(degeneracy * weights[None, :, None], eig_skn.shape)
    fermi_level = find_fermi_level(eig_skn.ravel(), state_weights.ravel(), placed, width)
    f_skn = fermi_dirac(eig_skn, fermi_level, width)

    dtype = np.result_type(H_skMM.dtype, S_kMM.dtype, np.float64)
    rho = np.zeros((n_spins, n_k, N, N), dtype)
    W = np.zeros((n_spins, n_k, N, N), dtype)
    for s, k in list(vectors):
        C_Mn = vectors.pop((s, k))  # free as we go
        occupied = f_skn[s, k] > OCCUPATION_CUTOFF
        C = C_Mn[:, occupied]
        fC = C * (degeneracy * f_skn[s, k, occupied])
        rho[s, k] = fC @ C.conj().T
        W[s, k] = (fC * eig_skn[s, k, occupied]) @ C.conj().T

    band_energy = float(np.sum(state_weights * f_skn * eig_skn))
    entropy_energy = float(width * np.sum(state_weights * _entropy_term(f_skn)))
    return DensityMatrices(
        kpoints=kpoints, kpoint_weights=weights, eigenvalues=eig_skn, occupations=f_skn,
        rho=rho, energy_weighted=W, fermi_level=float(fermi_level), width=float(width),
        n_electrons=placed, band_energy=band_energy, entropy_energy=entropy_energy,
    )


# ------------------------------------------------------------------ records
def density_matrices_for_record(
    record: HamiltonianRecord,
    kpoints: np.ndarray | None = None,
    kpoint_weights: np.ndarray | None = None,
    n_electrons: float | None = None,
    width: float | None = None,
    charge: float = 0.0,
) -> DensityMatrices:
    """`density_matrices` of a record's H(k), S(k) (dense; O(N^2) memory per k and spin).

    Args:
        record: a record with H.
        kpoints, kpoint_weights: reduced k-points (full or time-reversal-reduced grid) and
            weights. Default: the record's SCF k-points (labels), else Γ for a structure
            without periodic directions. A Γ-only set is solved as a real problem.
        n_electrons: default record.labels.n_electrons.
        width: Fermi-Dirac width (eV); default the record's smearing (0.01 eV).
        charge: net charge (e).

    Raises:
        MLHError: an overlap-only record, no electron count, a periodic record without
            k-points, or any error of `density_matrices`.
    """
    if not record.has_hamiltonian:
        raise MLHError("this is an overlap-only record: it has no Hamiltonian")
    n_electrons = record_electron_count(record, n_electrons)
    if kpoints is None:
        if record.labels.kpoints is not None:
            kpoints, kpoint_weights = record.labels.kpoints, record.labels.kpoint_weights
        elif not np.any(record.pbc):
            kpoints = np.zeros((1, 3))
        else:
            raise MLHError("a periodic record without SCF k-points in its labels: pass kpoints")
    kpoints = np.asarray(kpoints, float).reshape(-1, 3)
    real = len(kpoints) == 1 and not np.any(kpoints)
    blochs = [None] if real else list(kpoints)
    S_kMM = np.array([record.overlap_k(k).toarray() for k in blochs])
    H_skMM = np.array([[record.hamiltonian_k(k, s).toarray() for k in blochs]
                       for s in range(record.n_spins)])
    return density_matrices(
        H_skMM, S_kMM, n_electrons, kpoints=kpoints, kpoint_weights=kpoint_weights,
        width=record_smearing_width(record) if width is None else width, charge=charge,
    )


def orbital_atoms(record: HamiltonianRecord) -> np.ndarray:
    """(N,) the atom of every orbital of the record."""
    return np.repeat(np.arange(record.n_atoms), record.orbital_counts)


# ------------------------------------------------------------------ real-space blocks
def density_matrix_blocks(
    dm: DensityMatrices, record: HamiltonianRecord, energy_weighted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """rho (or W) in the record's block layout: `kspace_blocks` of dm.rho (dm.energy_weighted)."""
    source = dm.energy_weighted if energy_weighted else dm.rho
    return kspace_blocks(source, dm.kpoints, dm.kpoint_weights, record)


def kspace_blocks(
    M_skMM: np.ndarray, kpoints: np.ndarray, kpoint_weights: np.ndarray,
    record: HamiltonianRecord,
) -> tuple[np.ndarray, np.ndarray]:
    """Matrices M_s(k) like rho(k) in the record's block layout: the conjugate of its H(R),
    S(R) blocks.

    For the stored pair p = (i, j, R) the block is

        P_p[mu, nu] = Re sum_k w_k M(k)_{nu mu} exp(+2 pi i k.R),

    (real for a full or time-reversal-reduced k set), so that, with the on-site blocks P_a,

        sum_k w_k Tr[M(k) H(k)] = sum_a <P_a, H_a> + 2 sum_p <P_p, H_p>

    (<A, B> = sum of A * B), and likewise with S. For M = rho this gives N and Tr[rho H],
    for M = W, Tr[W S]. A pair the record does not store contributes nothing, so this
    holds exactly for the record's own H, S.

    Args:
        M_skMM: (n_spins, n_k, N, N) Hermitian matrices (units of M).
        kpoints: (n_k, 3) reduced k-points; kpoint_weights: (n_k,) their weights.
        record: the layout (pairs, shifts, orbital counts).

    Returns:
        (n_spins, n_pair_values) pair values and (n_spins, n_onsite_values) on-site values,
        laid out as record.H_pair / record.H_onsite.
    """
    n_spins, n_k, N = M_skMM.shape[0], M_skMM.shape[1], M_skMM.shape[-1]
    if N != record.n_orbitals:
        raise MLHError(f"matrices of {N} orbitals for a record of {record.n_orbitals}")
    rows, cols, pair_of_value = block_coo(record.pair_i, record.pair_j, record.orbital_counts)
    atoms = np.arange(record.n_atoms)
    orow, ocol, _ = block_coo(atoms, atoms, record.orbital_counts)
    pair = np.zeros((n_spins, len(rows)))
    onsite = np.zeros((n_spins, len(orow)))
    for k in range(n_k):
        w = kpoint_weights[k]
        phase = np.exp(2j * np.pi * (record.pair_shift @ kpoints[k]))[pair_of_value]
        for s in range(n_spins):
            M = M_skMM[s, k]
            pair[s] += w * (M[cols, rows] * phase).real
            onsite[s] += w * M[ocol, orow].real
    return pair, onsite
