"""Derivative of Tr[Y H0(R)] with the atom positions: the zeroth-step Hamiltonian's part of
the forces of a correction model (H = H0 + dH) in the DFT-functional route.

H0 is GPAW's Kohn-Sham H at its initial density: the superposed neutral-atom pseudo
densities n0(R) = sum_a sum_M f_aM Phi_aM(r - R_a)^2 (plus the core densities nc) and the
atomic density matrices D0. For a fixed matrix Y (per k-point and spin, GPAW's density-matrix
convention, k weights included)

    Tr[Y H0] = Tr[Y T] + dE_pot/d eps at eps = 0,

E_pot the density-dependent part of GPAW's energy (Hartree, xc, vbar, PAW corrections) of
the state n0 + nc + eps n_Y, D0 + eps D_Y, with n_Y and D_Y the pseudo density and the
atomic density matrices of Y (a neutral Y: GPAW rescales a charged pseudo density). Its derivative with the positions is then

    -d Tr[Y H0]/dR = F_basis + d/d eps F_pot(eps) at eps = 0:

- F_basis: GPAW's own LCAO force terms of the kinetic energy, the basis functions in the
  fixed potential v0 and the projectors with the fixed dH0 (gpaw.new.lcao.forces), with Y
  in place of the density matrix;
- F_pot(eps): the terms of the atom-centred densities that move with the atoms in the
  potential of the state at eps: n0 (its own atom-centred functions, as GPAW builds it),
  nc, the compensation charges (with Q_aL of eps) and vbar; d/d eps by a central difference
  (two potentials: one Poisson solve and one xc evaluation each).

So the potential's response to the moving atomic densities (Hartree, xc, PAW) is GPAW's
own, without a separate kernel. Spin-paired, neutral systems. Units: eV, Å (GPAW's
Hartree and Bohr converted here).
"""

from __future__ import annotations

import numpy as np

from mlh.errors import MLHError
from physics.dft.lcao_terms import add_to_density, atom_centred_terms, basis_terms, density_of

__all__ = ["baseline_trace_forces"]


def _initial_density_functions(dft):
    """Atom-centred functions of the superposed pseudo densities sum_M f_aM Phi_aM^2
    (one l = 0 spline per atom, the coarse grid), as GPAW's initial density builds them."""
    from gpaw.new.density import atomic_occupation_numbers
    from gpaw.spline import Spline

    functions = []
    for setup in dft.setups:
        f_i = atomic_occupation_numbers(setup, np.zeros(3), 1)[0]
        splines = setup.basis_functions_J
        rmax = max(s.get_cutoff() for s in splines)
        r_g = np.linspace(0.0, rmax, 2001)
        density_g = np.zeros_like(r_g)
        i = 0
        for spline in splines:
            l = spline.get_angular_momentum_number()
            f_m = f_i[i:i + 2 * l + 1]
            if not np.allclose(f_m, f_m[0]):
                raise MLHError(f"{setup.symbol}: non-spherical initial occupations")
            density_g += f_m.sum() * (spline.map(r_g) * r_g**l) ** 2 / (4 * np.pi)
            i += 2 * l + 1
        functions.append([Spline.from_data(0, rmax, density_g * np.sqrt(4 * np.pi))])
    grid = dft.density.nt_sR.desc
    return grid.atom_centered_functions(functions, dft.relpos_ac, cut=True)


def _moving_density_terms(dft, atomic_aX: list, scale: float, weight_R) -> np.ndarray:
    """Force terms (Ha/Bohr) of the atom-centred densities (n0 and nc, compensation charges,
    vbar) in the potential of `dft.density` as it is now.

    GPAW scales the initial n0 + nc by x = (valence charge) / integral(n0 + nc) on the grid,
    which moves with the atoms too; with that, n0 and nc move in vt - <vt> (the mean weighted
    by n0 + nc, `weight_R`), times x (`scale`).
    """
    density = dft.density
    potential, _, _ = dft.pot_calc.calculate(density)
    F_av = atom_centred_terms(dft, potential)
    vt_R = potential.vt_sR.data.mean(axis=0)
    vt_R = vt_R - np.sum(vt_R * weight_R) / np.sum(weight_R)
    grid = density.nt_sR.desc
    for functions in atomic_aX:
        for a, dF_v in functions.derivative(grid.from_data(vt_R)).items():
            F_av[a] += scale * dF_v[:, 0]
    return F_av


def baseline_trace_forces(dft, Y_skMM: np.ndarray, step: float = 1e-3) -> np.ndarray:
    """-d/dR sum_{s,k} sum_{mu nu} Y_{mu nu} H0_{mu nu} (eV/Å, (n_atoms, 3)).

    Args:
        dft: GPAW's DFT object at its initial density (gpaw.new.calculation.DFT with
            converge=False), on the k-points of Y.
        Y_skMM: (spins, IBZ k-points, orbitals, orbitals) Hermitian per k, GPAW's density-
            matrix convention (rho_mu nu = sum_n f_n C*_n mu C_n nu, k weights included).
        step: size of eps n_Y relative to the initial pseudo density (central difference).

    Y must carry no charge, sum_k Tr[Y S] = 0 (GPAW renormalises the pseudo density to the
    compensation charges, so only neutral changes of the density are derivatives of its
    energy). The DFT-functional route's G_H is neutral: H -> H + c S changes no state.
    Rounding leaves ~1e-9 electrons in such a Y; up to 1e-7 of max(sum |Y S|, 1) is accepted
    (a force error of ~1e-6 eV/Å).

    Raises:
        MLHError: a spin-polarised or charged calculation, or a charged Y.
    """
    from ase.units import Bohr, Ha

    density = dft.density
    if density.ndensities != 1 or density.charge != 0.0:
        raise MLHError("the H0 forces are for spin-paired, neutral structures")
    charge = sum(np.sum(Y_skMM[wfs.spin, wfs.k] * wfs.S_MM.data) for wfs in dft.ibzwfs)
    size = sum(np.sum(np.abs(Y_skMM[wfs.spin, wfs.k] * wfs.S_MM.data)) for wfs in dft.ibzwfs)
    if abs(charge) > 1e-7 * max(size, 1.0):  # rounding of a neutral Y: ~1e-9 electrons
        raise MLHError(f"Y carries a charge of {abs(charge):.3g} electrons; the H0 forces "
                       f"need sum_k Tr[Y S] = 0")
    forces = basis_terms(dft, Y_skMM)
    nY_sR, DY_asii = density_of(dft, Y_skMM)
    largest = np.abs(nY_sR).max()
    if largest == 0.0:
        return forces * Ha / Bohr
    eps = step * np.abs(density.nt_sR.data).max() / largest
    n0_aX = _initial_density_functions(dft)
    atomic_R = density.nct_R.new()
    atomic_R.data[:] = density.nct_R.data
    n0_aX.add_to(atomic_R)
    normalisation = density.nt_sR[0].integrate() / atomic_R.integrate()
    terms = []
    for sign in (1.0, -1.0):
        add_to_density(density, nY_sR, DY_asii, sign * eps)
        try:
            terms.append(_moving_density_terms(dft, [n0_aX, density.nct_aX], normalisation,
                                               atomic_R.data))
        finally:
            add_to_density(density, nY_sR, DY_asii, -sign * eps)
    forces += (terms[0] - terms[1]) / (2 * eps)
    return forces * Ha / Bohr
