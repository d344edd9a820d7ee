"""Occupied states of a given Hamiltonian installed in GPAW's DFT object, and their density.

Used by the first-step baseline (mlh.gpaw.reference) and by the physics routes
(physics.dft.functional). Units: eV at the interface, GPAW's Hartree inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from ase.units import Ha

from mlh.errors import MLHError

__all__ = ["HamiltonianFunction", "Eigensolver", "OVERLAP_TOLERANCE", "InstalledDensity",
           "install_density", "kpoint_index", "first_step_mix"]

HamiltonianFunction = Callable[[np.ndarray | None, int], np.ndarray]
"""hamiltonian_k(k, spin) -> dense (N, N) H in eV; k reduced, None for the real Γ matrix."""

Eigensolver = Callable[[np.ndarray, np.ndarray, str, bool], tuple[np.ndarray, np.ndarray]]
"""solve(H, S, where, real) -> (eigenvalues (eV), S-normalised eigenvectors as columns) of
H C = S C eps; `real`: GPAW solves this k-point (Γ) as a real problem."""

OVERLAP_TOLERANCE = 1e-6
"""Largest |S_record - S_GPAW| accepted: larger means the record does not belong to the
structure and settings GPAW was given."""


def first_step_mix(H0: np.ndarray, H_n0: np.ndarray, share: float) -> np.ndarray:
    """The first-step baseline B = H0 + s (H[n0] - H0) (eV) from H0 and H[n0], the potential
    of the density n0 of H0's occupied states, in any common layout (Bloch matrices or
    real-space blocks)."""
    return H0 + share * (H_n0 - H0)


def kpoint_index(kpoints: np.ndarray, k: np.ndarray | None,
                 among: str = "GPAW's k-points; this is a bug") -> int:
    """Position of reduced k-point `k` (None: Γ, the first) among GPAW's `kpoints` (n_k, 3).

    Raises:
        MLHError: "k-point K is not one of `among`"."""
    if k is None:
        return 0
    matches = np.flatnonzero(np.abs(kpoints - np.asarray(k)).max(axis=1) < 1e-9)
    if len(matches) != 1:
        raise MLHError(f"k-point {k} is not one of {among}")
    return int(matches[0])


def _gpaw_matrix_eigh(H: np.ndarray, S: np.ndarray, where: str, real: bool
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of GPAW's own matrices (Hermitian by construction)."""
    return scipy.linalg.eigh(H.real if real else H, S, driver="gvd")


def _check_overlap(overlap_k: Callable[[np.ndarray | None], np.ndarray], k: np.ndarray | None,
                   S: np.ndarray, where: str) -> None:
    """Raise if the caller's S at k differs from GPAW's S by more than OVERLAP_TOLERANCE."""
    difference = float(np.abs(np.asarray(overlap_k(k)) - S).max())
    if difference > OVERLAP_TOLERANCE:
        raise MLHError(f"the given S {where} differs from GPAW's by {difference:.2e}: H does "
                       f"not belong to this structure, basis and setups")


def _install_states(dft, hamiltonian_k: HamiltonianFunction,
                    overlap_k: Callable[[np.ndarray | None], np.ndarray] | None,
                    solve: Eigensolver) -> None:
    """Diagonalise the given H with GPAW's S per (k, spin); put eigenpairs into GPAW's wfs.

    With `overlap_k`, first check that the caller's S equals GPAW's at every k."""
    from gpaw.core.matrix import MatrixWithNoData

    ibzwfs = dft.ibzwfs
    for wfs in ibzwfs:
        real = wfs.dtype == float
        k = np.asarray(ibzwfs.ibz.kpt_kc[wfs.k], float)
        where = f"at k-point {wfs.k} {tuple(np.round(k, 6))}, spin {wfs.spin}"
        S = np.asarray(wfs.S_MM.data)
        H = np.asarray(hamiltonian_k(None if real else k, wfs.spin))
        if H.shape != S.shape:
            raise MLHError(f"H {where} has shape {H.shape}; GPAW's basis has {S.shape[0]} "
                           f"orbitals")
        if overlap_k is not None:
            _check_overlap(overlap_k, None if real else k, S, where)
        eig, C = solve(H, S, where, real)
        n = wfs.nbands
        if isinstance(wfs.C_nM, MatrixWithNoData):
            wfs.C_nM = wfs.C_nM.create()
        wfs.C_nM.data[:] = C.T[:n]
        wfs.eig_n = eig[:n] / Ha
        wfs._P_ani = None  # projections are cached from C_nM; GPAW resets them the same way


@dataclass(frozen=True)
class InstalledDensity:
    """The occupations of an installed state (eV).

    Attributes:
        n_electrons: electrons placed (valence minus charge).
        band_energy: sum f eps of the given H.
        entropy: -T S of the occupations.
        extrapolation: GPAW's zero-width correction of the occupations.
        fermi_level: Fermi level of the occupations.
    """

    n_electrons: float
    band_energy: float
    entropy: float
    extrapolation: float
    fermi_level: float


def install_density(dft, hamiltonian_k: HamiltonianFunction,
                    overlap_k: Callable[[np.ndarray | None], np.ndarray] | None = None,
                    solve: Eigensolver = _gpaw_matrix_eigh) -> InstalledDensity:
    """Make the density of a given H's occupied states GPAW's current one.

    Diagonalises H with GPAW's S per (k, spin) (`overlap_k`: check the caller's S first;
    `solve`: the eigensolver, default scipy's for GPAW's own matrices), occupies the states
    with GPAW's occupation calculator, builds the density n_out from them and sets
    `dft.potential` and `dft.energies` to v[n_out] and its energy terms.

    Raises:
        MLHError: H of the wrong size, a mismatching overlap, an electron count the bands
            cannot hold, or any error of `solve`.
    """
    _install_states(dft, hamiltonian_k, overlap_k, solve)
    ibzwfs, density, pot_calc = dft.ibzwfs, dft.density, dft.pot_calc
    nelectrons = density.nvalence - density.charge + pot_calc.charge
    try:
        band, entropy, extrapolation = ibzwfs.calculate_occs(dft.scf_loop.occ_calc, nelectrons)
    except (ValueError, RuntimeError) as err:
        raise MLHError(f"GPAW could not place {nelectrons:g} electrons in "
                       f"{ibzwfs.nbands} bands: {err}") from None
    density.update(ibzwfs)
    dft.potential, dft.energies, _ = pot_calc.calculate(density, ibzwfs, dft.potential.vHt_x)
    return InstalledDensity(
        n_electrons=float(nelectrons), band_energy=float(band) * Ha,
        entropy=float(entropy) * Ha, extrapolation=float(extrapolation) * Ha,
        fermi_level=float(np.asarray(ibzwfs.fermi_levels).ravel()[0]) * Ha)
