"""GPAW's LCAO force terms for a given matrix in place of the density matrix.

Building blocks of the dft route's forces (physics.dft.baseline_forces,
physics.dft.harris_forces): GPAW's own force integrals (gpaw.new.lcao.forces and the
potential calculator's atom-centred terms) applied to any Hermitian matrix Y per k-point and
spin in GPAW's density-matrix convention (Y_MN = sum_n f_n conj(C_nM) C_nN, k weights and
spin degeneracy included). All forces here are in GPAW's units (Hartree/Bohr).
"""

from __future__ import annotations

import numpy as np

__all__ = ["basis_terms", "overlap_terms", "density_of", "add_to_density",
           "atom_centred_terms"]


def _atom_indices(wfs) -> list[tuple[int, int, int]]:
    """(atom, first orbital, end orbital) of every atom in the LCAO basis."""
    indices, first = [], 0
    for a, sphere in enumerate(wfs.basis.sphere_a):
        indices.append((a, first, first + sphere.Mmax))
        first += sphere.Mmax
    return indices


def _per_state(dft, Y_skMM: np.ndarray):
    """(wfs, (dThetadR, dTdR, dPdR), row range, Y^T in GPAW's dtype, atom indices) for each
    state of `dft.ibzwfs`: what GPAW's LCAO force terms take."""
    for wfs in dft.ibzwfs:
        derivatives = wfs.tci_derivatives.calculate_derivatives(wfs.q)
        YT_MM = np.ascontiguousarray(Y_skMM[wfs.spin, wfs.k].T, dtype=wfs.S_MM.data.dtype)
        yield wfs, derivatives, wfs.T_MM.dist.my_row_range(), YT_MM, _atom_indices(wfs)


def basis_terms(dft, Y_skMM: np.ndarray, vt_sR: np.ndarray | None = None,
                dH_asii: dict[int, np.ndarray] | None = None, kinetic: bool = True
                ) -> np.ndarray:
    """-d/dR Tr[Y H] at a fixed potential (Ha/Bohr, (n_atoms, 3)): the kinetic term, the
    basis functions in the pseudo potential `vt_sR` and the projectors with `dH_asii`
    (default both `dft.potential`'s); `kinetic=False` leaves T out (for a potential change)."""
    from gpaw.new.lcao.forces import add_atomic_density_term, add_kinetic_term

    if vt_sR is None:
        vt_sR = dft.potential.vt_sR.data
        dH_asii = dft.potential.dH_asii
    F_av = np.zeros((len(dft.setups), 3))
    for wfs, (_, dTdR_vMM, dPdR_avMi), rows, rhoT_MM, indices in _per_state(dft, Y_skMM):
        if kinetic:
            add_kinetic_term(rhoT_MM, dTdR_vMM[:, rows[0]:rows[1]], F_av, indices,
                             wfs.atomdist.indices, rows)
        F_av += wfs.basis.calculate_force_contribution(
            np.ascontiguousarray(vt_sR[wfs.spin]), rhoT_MM, wfs.q)
        for b in wfs.atomdist.indices:
            add_atomic_density_term(b, dH_asii[b][wfs.spin], wfs.P_aMi[b], dPdR_avMi[b],
                                    rhoT_MM, indices, F_av, rows)
    return F_av


def overlap_terms(dft, W_skMM: np.ndarray) -> np.ndarray:
    """Tr[W dS/dR] (Ha/Bohr, (n_atoms, 3)) of an energy-weighted matrix W (Hartree), with
    GPAW's S (pseudo overlap and PAW corrections): the term GPAW's forces carry for the
    installed state's W."""
    from gpaw.new.lcao.forces import add_den_mat_paw_term, add_den_mat_term

    F_av = np.zeros((len(dft.setups), 3))
    for wfs, (dThetadR_vMM, _, dPdR_avMi), rows, erhoT_MM, indices in _per_state(dft, W_skMM):
        add_den_mat_term(erhoT_MM, dThetadR_vMM[:, rows[0]:rows[1]], F_av, indices,
                         wfs.atomdist.indices, rows)
        for b in wfs.atomdist.indices:
            add_den_mat_paw_term(b, dft.setups[b].dO_ii, wfs.P_aMi[b], dPdR_avMi[b],
                                 erhoT_MM, indices, F_av, rows)
    return F_av


def density_of(dft, Y_skMM: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Pseudo density (coarse grid, per spin) and atomic density matrices of Y."""
    nt_sR = dft.density.nt_sR.new()
    nt_sR.data[:] = 0.0
    D_asii = {a: np.zeros_like(D) for a, D in dft.density.D_asii.items()}
    for wfs in dft.ibzwfs:
        Y_MM = np.ascontiguousarray(Y_skMM[wfs.spin, wfs.k], dtype=wfs.S_MM.data.dtype)
        wfs.basis.construct_density(Y_MM, nt_sR.data[wfs.spin], q=wfs.q)
        for a, P_Mi in wfs.P_aMi.items():
            D_asii[a][wfs.spin] += (P_Mi.conj().T @ Y_MM @ P_Mi).real
    return nt_sR.data.copy(), D_asii


def add_to_density(density, nY_sR: np.ndarray, DY_asii: dict[int, np.ndarray],
                   factor: float) -> None:
    """density += factor * (n_Y, D_Y), in place."""
    density.nt_sR.data += factor * nY_sR
    for a, D in DY_asii.items():
        density.D_asii[a] += factor * D


def atom_centred_terms(dft, potential) -> np.ndarray:
    """Force terms (Ha/Bohr) of the compensation charges (with `dft.density`'s Q_aL) and vbar
    in `potential` and `dft.density`'s pseudo density, GPAW's own (its smooth core density's
    term is the caller's: how nc moves depends on how the density is normalised)."""
    density = dft.density
    Q_aL = density.calculate_compensation_charge_coefficients()
    Fcc_av, _, _, Fvbar_av, _ = dft.pot_calc.force_contributions(Q_aL, density, potential)
    F_av = np.array(Fcc_av, float)
    for a, dF_v in Fvbar_av.items():
        F_av[a] += dF_v[:, 0]
    return F_av
