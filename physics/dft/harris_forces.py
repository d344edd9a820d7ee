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

This module gives the middle two terms and Y; the last is the response through the model
(physics.dft.forces), as for the Kohn-Sham forces with H[n_out] - H_model there. The Kohn-
Sham response has no Delta: the Harris response is first order in n_out - n', the Kohn-
Sham one in H[n_out] - H_model.

Tr[Delta dH[n_out]/dR|_rho] is the derivative with e of GPAW's fixed-density-matrix forces
at rho + e Delta: the basis functions and projectors with Delta in v[n_out], with rho in the
change of the potential, and the atom-centred densities (compensation charges, nc, vbar) in
the potentials at +-e (central difference; two Poisson solves and xc evaluations, which give
Y too). Units: eV, Å at the interface (GPAW's Hartree and Bohr converted here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.units import Bohr, Ha

from physics.dft.functional import harris_states
from physics.dft.lcao_terms import (
    add_to_density,
    atom_centred_terms,
    basis_terms,
    density_of,
    overlap_terms,
)

__all__ = ["HarrisForceTerms", "harris_force_terms"]


@dataclass(frozen=True)
class HarrisForceTerms:
    """The parts of the Harris-Foulkes forces beyond GPAW's forces of the installed state.

    Attributes:
        direct: (n_atoms, 3) Tr[(W' - W) dS/dR] - Tr[Delta dH[n_out]/dR|_rho] (eV/Å).
        kernel_matrix: (n_spins, n_k, N, N) Y = dH[n_out + e n_Delta]/de (eV) at GPAW's
            irreducible k-points (the order of `output_hamiltonians`), H's convention: the
            A of the response -Tr[Y d rho/dR].
    """

    direct: np.ndarray
    kernel_matrix: np.ndarray


def _stacked(dft, matrices: list[np.ndarray]) -> np.ndarray:
    """(n_spins, n_k, N, N) of one matrix per state of `dft.ibzwfs`."""
    ibzwfs = dft.ibzwfs
    stacked = np.zeros((ibzwfs.nspins, len(ibzwfs.ibz), *matrices[0].shape),
                       np.result_type(*matrices))
    for matrix, wfs in zip(matrices, ibzwfs):
        stacked[wfs.spin, wfs.k] = matrix
    return stacked


def _perturbed_potential(dft, n_sR: np.ndarray, D_asii: dict[int, np.ndarray], factor: float):
    """GPAW's potential at the current density + factor * (n, D), and the atom-centred force
    terms (Ha/Bohr: compensation charges, nc, vbar) there; the density is restored."""
    density = dft.density
    add_to_density(density, n_sR, D_asii, factor)
    try:
        potential, _, _ = dft.pot_calc.calculate(density, dft.ibzwfs,
                                                 dft.potential.vHt_x.copy())
        forces = atom_centred_terms(dft, potential)
        vt_R = density.nt_sR.desc.from_data(potential.vt_sR.data.mean(axis=0))
        for a, dF_v in density.nct_aX.derivative(vt_R).items():
            forces[a] += dF_v[:, 0]
    finally:
        add_to_density(density, n_sR, D_asii, -factor)
    return potential, forces


def harris_force_terms(dft, output_hamiltonians: np.ndarray, n_electrons: float,
                       step: float = 1e-3) -> HarrisForceTerms:
    """Harris-Foulkes force terms of the state installed in `dft` (module docstring).

    Args:
        dft: GPAW's DFT object with the model's state installed
            (physics.dft.functional.install_density): wave functions, density n_out and
            potential v[n_out].
        output_hamiltonians: (n_spins, n_k, N, N) H[n_out] (eV) at GPAW's k-points.
        n_electrons: electrons placed.
        step: size of e n_Delta relative to the pseudo density (central difference).
    """
    ibzwfs, density = dft.ibzwfs, dft.density
    H_out = [output_hamiltonians[wfs.spin, wfs.k] / Ha for wfs in ibzwfs]
    harris = harris_states(dft, H_out, n_electrons)
    rho = _stacked(dft, [wfs.calculate_density_matrix() for wfs in ibzwfs])
    W = _stacked(dft, [wfs.calculate_density_matrix(eigs=True) for wfs in ibzwfs])
    delta = harris.density_matrices(dft) - rho
    forces = overlap_terms(dft, harris.density_matrices(dft, energy_weighted=True) - W)
    forces += basis_terms(dft, delta)

    n_sR, D_asii = density_of(dft, delta)
    kernel = np.zeros_like(output_hamiltonians)
    largest = np.abs(n_sR).max()
    if largest == 0.0:
        return HarrisForceTerms(forces * Ha / Bohr, kernel)
    eps = step * np.abs(density.nt_sR.data).max() / largest
    (plus, forces_plus), (minus, forces_minus) = (
        _perturbed_potential(dft, n_sR, D_asii, sign * eps) for sign in (1.0, -1.0))
    dvt_sR = (plus.vt_sR.data - minus.vt_sR.data) / (2 * eps)
    ddH_asii = {a: (dH - minus.dH_asii[a]) / (2 * eps) for a, dH in plus.dH_asii.items()}
    forces += basis_terms(dft, rho, dvt_sR, ddH_asii, kinetic=False)
    forces += (forces_plus - forces_minus) / (2 * eps)

    # Y: one matrix calculator per potential, each state's matrix computed once (GPAW adds
    # T and the PAW terms in place into a calculator's cached matrix at Γ)
    hamiltonian = dft.scf_loop.hamiltonian
    calculators = [hamiltonian.create_hamiltonian_matrix_calculator(p) for p in (plus, minus)]
    for wfs in ibzwfs:
        H_plus, H_minus = (np.array(c.calculate_matrix(wfs).data) for c in calculators)
        kernel[wfs.spin, wfs.k] = (H_plus - H_minus) / (2 * eps) * Ha
    return HarrisForceTerms(forces * Ha / Bohr, kernel)
