"""Forces of the Harris-Foulkes free energy at the dft route's density.

The route installs the occupied states of a model's H (density matrix rho, energy-weighted
W, density n_out). The Harris-Foulkes free energy of that density is

    A_HF(R) = Omega'(H[n_out], S) + E_dc[n_out],

Omega' = sum f' eps' - T S' of the eigenstates of (H[n_out], S) at a fixed electron count
(density matrix rho', energy-weighted W'), and E_dc the rest of the Kohn-Sham functional
(A_KS = Tr[rho H[n_out]] - T S + E_dc). Omega' is stationary in its own states, so with
Delta = rho' - rho

    dA_HF/dR = dE_KS/dR|_rho - Tr[W' dS/dR] + Tr[Delta dH[n_out]/dR|_rho]
               + Tr[Y d rho/dR],    Y = dH[n_out + e n_Delta]/de,

dE_KS/dR|_rho the derivative at a fixed density matrix (GPAW's forces of the installed state
give -dE_KS/dR|_rho + Tr[W dS/dR]) and Y the change of H[n_out] with the density of Delta
(Hartree, xc and PAW kernels: Tr[Delta dH/d rho . d rho] = Tr[Y d rho] as the kernel is
symmetric). So

    F_HF = F_GPAW + Tr[(W' - W) dS/dR] - Tr[Delta dH[n_out]/dR|_rho] - Tr[Y d rho/dR].

For a functional A = (1 - s) A_KS + s A_HF (s = 1/2: the mean) this module gives F_GPAW plus
s times the middle terms, and s Y. The last term is the response through the model
(physics.dft.forces): -Tr[A d rho/dR] with A = (1 - s)(H[n_out] - H_model) + s Y, the Kohn-
Sham part as in physics.dft.forces.

Tr[Delta dH[n_out]/dR|_rho] is the derivative with e of GPAW's fixed-density-matrix forces
at rho + e Delta: the basis functions and projectors with Delta in v[n_out], with rho in the
change of the potential, and the atom-centred densities (compensation charges, nc, vbar) in
the potentials at +-e (central difference; two Poisson solves and xc evaluations, whose
difference also gives Y). F_GPAW is assembled from GPAW's own terms, so that its basis-function
integrals serve rho and Delta at once (the grid integral of the basis functions' gradients is
the costly part: ~5 s per matrix for 72 SiO2 atoms on 2 cores). Units: eV, Å at the
interface (GPAW's Hartree and Bohr converted here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.units import Bohr, Ha

from physics.dft.functional import HarrisStates
from physics.dft.lcao_terms import (
    add_to_density,
    atom_centred_terms,
    basis_terms,
    density_of,
    overlap_terms,
)

__all__ = ["StateForces", "state_forces", "fixed_density_matrix_derivative"]


@dataclass(frozen=True)
class StateForces:
    """Forces of the installed state for A = (1 - s) A_KS + s A_HF, all but the response
    through the model.

    Attributes:
        forces: (n_atoms, 3) F_GPAW + s {Tr[(W' - W) dS/dR] - Tr[Delta dH[n_out]/dR|_rho]}
            (eV/Å).
        kernel_matrix: (n_spins, n_k, N, N) s Y (eV) at GPAW's irreducible k-points (the
            order of the result's `output_hamiltonians`), H's convention: the Harris part
            of the A of the response -Tr[A d rho/dR]; zero for s = 0.
    """

    forces: np.ndarray
    kernel_matrix: np.ndarray


def _stacked(dft, matrices: list[np.ndarray]) -> np.ndarray:
    """(n_spins, n_k, N, N) of one matrix per state of `dft.ibzwfs`."""
    ibzwfs = dft.ibzwfs
    stacked = np.zeros((ibzwfs.nspins, len(ibzwfs.ibz), *matrices[0].shape),
                       np.result_type(*matrices))
    for matrix, wfs in zip(matrices, ibzwfs):
        stacked[wfs.spin, wfs.k] = matrix
    return stacked


def _atom_centred_forces(dft, potential) -> np.ndarray:
    """GPAW's force terms (Ha/Bohr) of the compensation charges, vbar and the smooth core
    density nc in `potential` at `dft.density`."""
    density = dft.density
    forces = atom_centred_terms(dft, potential)
    vt_R = density.nt_sR.desc.from_data(potential.vt_sR.data.mean(axis=0))
    for a, dF_v in density.nct_aX.derivative(vt_R).items():
        forces[a] += dF_v[:, 0]
    return forces


def _perturbed_potential(dft, n_sR: np.ndarray, D_asii: dict[int, np.ndarray], factor: float):
    """GPAW's potential at the current density + factor * (n, D), and `_atom_centred_forces`
    there; the density is restored."""
    density = dft.density
    add_to_density(density, n_sR, D_asii, factor)
    try:
        potential, _, _ = dft.pot_calc.calculate(density, dft.ibzwfs,
                                                 dft.potential.vHt_x.copy())
        return potential, _atom_centred_forces(dft, potential)
    finally:
        add_to_density(density, n_sR, D_asii, -factor)


def _potential_matrices(dft, vt_sR: np.ndarray, dH_asii: dict[int, np.ndarray]) -> np.ndarray:
    """(n_spins, n_k, N, N) matrices of a potential change (pseudo potential on the coarse
    grid and PAW dH, Hartree) in the LCAO basis: GPAW's Hamiltonian matrix without T."""
    from gpaw.new.lcao.hamiltonian import CollinearHamiltonianMatrixCalculator

    basis = dft.scf_loop.hamiltonian.basis
    calculator = CollinearHamiltonianMatrixCalculator(
        [basis.calculate_potential_matrices(np.ascontiguousarray(vt_R)) for vt_R in vt_sR],
        [{a: dH[s] for a, dH in dH_asii.items()} for s in range(len(vt_sR))],
        basis, include_kinetic=False)
    matrices = []
    for wfs in dft.ibzwfs:
        V_MM = calculator.calculate_matrix(wfs)
        if wfs.dtype == complex:
            V_MM.add_hermitian_conjugate(scale=0.5)
        else:
            V_MM.tril2full()
        matrices.append(np.array(V_MM.data))
    return _stacked(dft, matrices)


def state_forces(dft, harris: HarrisStates | None, harris_share: float,
                 step: float = 1e-3) -> StateForces:
    """Forces of the state installed in `dft` for A = (1 - s) A_KS + s A_HF (module docstring).

    With s = 0 these are GPAW's own forces of the state (gpaw.new.calculation.DFT's forces,
    assembled here from the same terms so that the Harris parts share their grid integrals:
    the basis functions in v[n_out] with rho + s Delta, the overlap with W + s (W' - W)).

    Args:
        dft: GPAW's DFT object with the model's state installed
            (physics.dft.functional.install_density): wave functions, density n_out and
            potential v[n_out].
        harris: the eigenstates of H[n_out] (physics.dft.functional.harris_states; the
            result of functional_at_state keeps them); needed for s > 0.
        harris_share: s, the Harris-Foulkes share of the functional.
        step: size of e n_Delta relative to the pseudo density (central difference).
    """
    ibzwfs = dft.ibzwfs
    rho = _stacked(dft, [wfs.calculate_density_matrix() for wfs in ibzwfs])
    W = _stacked(dft, [wfs.calculate_density_matrix(eigs=True) for wfs in ibzwfs])
    kernel = np.zeros_like(rho)
    delta = np.zeros_like(rho)
    if harris_share:
        delta = harris.density_matrices(dft) - rho
        W = W + harris_share * (harris.density_matrices(dft, energy_weighted=True) - W)
    forces = (basis_terms(dft, rho + harris_share * delta) + overlap_terms(dft, W)
              + _atom_centred_forces(dft, dft.potential))
    if not harris_share:
        return StateForces(forces * Ha / Bohr, kernel)
    density_forces, kernel = _density_response(dft, rho, delta, step)
    return StateForces((forces + harris_share * density_forces) * Ha / Bohr,
                       (harris_share * Ha * kernel).astype(rho.dtype))


def _density_response(dft, rho: np.ndarray, delta: np.ndarray, step: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The parts of -Tr[delta dH[n]/dR|_rho] that come from the potential's change with the
    density of `delta` (Ha/Bohr: the basis functions of rho and the atom-centred densities
    in that change), and the change's matrices Y = dH[n + e n_delta]/de (Ha, the kernel
    applied to delta), at the state installed in `dft` (GPAW's convention and k order)."""
    n_sR, D_asii = density_of(dft, delta)
    if np.abs(n_sR).max() == 0.0:
        return np.zeros((len(dft.setups), 3)), np.zeros_like(rho)
    eps = step * np.abs(dft.density.nt_sR.data).max() / np.abs(n_sR).max()
    (plus, forces_plus), (minus, forces_minus) = (
        _perturbed_potential(dft, n_sR, D_asii, sign * eps) for sign in (1.0, -1.0))
    dvt_sR = (plus.vt_sR.data - minus.vt_sR.data) / (2 * eps)
    ddH_asii = {a: (dH - minus.dH_asii[a]) / (2 * eps) for a, dH in plus.dH_asii.items()}
    forces = (basis_terms(dft, rho, dvt_sR, ddH_asii, kinetic=False)
              + (forces_plus - forces_minus) / (2 * eps))
    return forces, _potential_matrices(dft, dvt_sR, ddH_asii)


def fixed_density_matrix_derivative(dft, matrix: np.ndarray, step: float = 1e-3
                                    ) -> tuple[np.ndarray, np.ndarray]:
    """For the state installed in `dft` (density matrix rho, potential v[n]) and a matrix X
    (n_spins, n_k, N, N) in GPAW's density-matrix convention (k weights included):
    (-Tr[X dH[n]/dR|_rho] in eV/Å, Y = dH[n + e n_X]/de in eV), the derivative of H[n]
    along the atoms at a fixed density matrix (basis functions, projectors and atom-centred
    densities moving) traced with X, and the kernel matrices that carry rho's own change
    (Tr[X dH[n]/dR] = Tr[X dH/dR|_rho] + Tr[Y d rho/dR])."""
    rho = _stacked(dft, [wfs.calculate_density_matrix() for wfs in dft.ibzwfs])
    density_forces, kernel = _density_response(dft, rho, matrix, step)
    return ((basis_terms(dft, matrix) + density_forces) * Ha / Bohr,
            (Ha * kernel).astype(np.result_type(rho, matrix)))
