"""Dense spectra, Mulliken projections and DOS/PDOS (analysis/spectrum.py, analysis/dos.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.linalg
import xarray as xr
from ase.data import chemical_symbols

from analysis.dos import energy_grid, pdos_dataset, plot_pdos
from analysis.spectrum import dense_spectrum, generalized_eigh, orbital_channels
from mlh.errors import MLHError
from mlh.record.hamiltonian import Labels
from mlh.record.io import write_dataset
from physics.occupations import electron_count
from tests.structures import STRUCTURES
from tests.synthetic import random_record

KPOINTS = np.array([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0], [0.25, 0.5, -0.25]])
KPOINT_WEIGHTS = np.array([1.0, 2.0, 3.0])


@pytest.fixture(scope="module")
def record():
    return random_record(11, n_atoms=4)


@pytest.fixture(scope="module")
def spectrum(record):
    return dense_spectrum(record, kpoints=KPOINTS, kpoint_weights=KPOINT_WEIGHTS)


def _full_grid(spectrum, sigma=0.05, n_points=20_000):
    """A grid (relative to E_F) covering every state by 10 sigma."""
    offset = spectrum.energies - spectrum.fermi_level
    return energy_grid(offset.min() - 10 * sigma, offset.max() + 10 * sigma, n_points)


# ------------------------------------------------------------------ spectra
def test_gamma_spectrum_is_the_generalized_eigenproblem(record):
    spectrum = dense_spectrum(record)
    H, S = record.hamiltonian_k().toarray(), record.overlap_k().toarray()
    np.testing.assert_allclose(spectrum.energies, scipy.linalg.eigvalsh(H, S), atol=1e-10)
    np.testing.assert_allclose(spectrum.state_weights, 2.0)
    assert spectrum.method == "dense" and spectrum.energy_range == (-np.inf, np.inf)
    assert spectrum.n_electrons == record.labels.n_electrons


def test_projection_rows_sum_to_one(spectrum):
    np.testing.assert_allclose(spectrum.projections.sum(axis=1), 1.0, atol=1e-10)


def test_projections_summed_over_states_count_orbitals(record, spectrum):
    """Completeness: sum_n p_n(a, l) at one k-point = number of orbitals of channel (a, l)."""
    channel_M, _, _ = orbital_channels(record)
    orbitals_per_channel = np.bincount(channel_M)
    for k in range(len(KPOINTS)):
        np.testing.assert_allclose(spectrum.projections[spectrum.kpoint == k].sum(axis=0),
                                   orbitals_per_channel, atol=1e-9)


def test_kpoint_weights_are_normalised_and_hold_the_electrons(record, spectrum):
    expected = np.repeat(2 * KPOINT_WEIGHTS / KPOINT_WEIGHTS.sum(), record.n_orbitals)
    np.testing.assert_allclose(spectrum.state_weights, expected)
    count = electron_count(spectrum.energies, spectrum.state_weights, spectrum.fermi_level, 0.01)
    assert count == pytest.approx(record.labels.n_electrons, abs=1e-8)


def test_time_reversal_partner_has_the_same_spectrum(record):
    k = np.array([[0.13, 0.31, -0.2]])
    plus, minus = dense_spectrum(record, kpoints=k), dense_spectrum(record, kpoints=-k)
    np.testing.assert_allclose(plus.energies, minus.energies, atol=1e-10)
    np.testing.assert_allclose(plus.projections, minus.projections, atol=1e-8)


def test_charge_removes_electrons(record):
    neutral = dense_spectrum(record, kpoints=KPOINTS)
    charged = dense_spectrum(record, kpoints=KPOINTS, charge=1.5)
    assert charged.n_electrons == pytest.approx(neutral.n_electrons - 1.5)
    assert charged.fermi_level < neutral.fermi_level
    count = electron_count(charged.energies, charged.state_weights, charged.fermi_level, 0.01)
    assert count == pytest.approx(neutral.n_electrons - 1.5, abs=1e-8)


def test_spin_polarized_record():
    record = random_record(12, n_atoms=3, n_spins=2)
    both = dense_spectrum(record, kpoints=KPOINTS[:2], n_electrons=10.0)
    assert set(both.spin.tolist()) == {0, 1}
    np.testing.assert_allclose(both.state_weights, 0.5)  # w_k per spin channel
    assert both.state_weights.sum() == pytest.approx(2 * record.n_orbitals)
    up = dense_spectrum(record, kpoints=KPOINTS[:2], n_electrons=10.0, spin=1)
    assert up.fermi_level == both.fermi_level
    np.testing.assert_array_equal(up.energies, both.energies[both.spin == 1])
    with pytest.raises(MLHError, match="spin channel 2"):
        dense_spectrum(record, spin=2)


def test_bad_records_raise(record):
    with pytest.raises(MLHError, match="overlap-only"):
        dense_spectrum(replace(record, H_pair=None, H_onsite=None))
    with pytest.raises(MLHError, match="no electron count"):
        dense_spectrum(replace(record, labels=Labels()))
    with pytest.raises(MLHError, match="not positive definite"):
        dense_spectrum(replace(record, S_onsite=-record.S_onsite))
    with pytest.raises(MLHError, match="do not fit"):
        dense_spectrum(record, n_electrons=1000.0)
    with pytest.raises(MLHError, match="shape"):
        dense_spectrum(record, kpoints=np.zeros((2, 2)))
    broken = replace(record, H_onsite=record.H_onsite.copy())
    broken.H_onsite[0, 1] = np.nan  # after validation, as a corrupted array would be
    with pytest.raises(MLHError, match="NaN"):
        dense_spectrum(broken)
    broken.H_onsite[0, 1] = record.H_onsite[0, 1] + 1.0  # one off-diagonal on-site element
    with pytest.raises(MLHError, match="not (symmetric|Hermitian)"):
        dense_spectrum(broken)


def test_generalized_eigh_rejects_bad_matrices():
    S = np.eye(2)
    with pytest.raises(MLHError, match="H here is not symmetric"):
        generalized_eigh(np.array([[0.0, 1.0], [0.0, 0.0]]), S, "here")
    with pytest.raises(MLHError, match="S here is not positive definite"):
        generalized_eigh(np.eye(2), np.diag([1.0, -1.0]), "here")


# --------------------------------------------------------------------- PDOS
def test_pdos_sum_rules_and_integral(spectrum):
    grid = _full_grid(spectrum)
    ds = pdos_dataset(spectrum, grid, per_atom=True)
    capacity = spectrum.state_weights.sum()
    assert np.trapezoid(ds.dos.values, grid) == pytest.approx(capacity, rel=1e-6)
    np.testing.assert_allclose(ds.pdos_species.sum("species"), ds.dos, atol=1e-9)
    np.testing.assert_allclose(ds.pdos_species_l.sum("l"), ds.pdos_species, atol=1e-12)
    np.testing.assert_allclose(ds.pdos_atom.sum("atom"), ds.dos, atol=1e-9)
    assert list(ds.species.values) == [chemical_symbols[z] for z in np.unique(spectrum.numbers)]
    assert ds.dos.attrs["units"] == "states/eV" and ds.energy.attrs["units"] == "eV"
    assert ds.attrs["fermi_level"] == spectrum.fermi_level and ds.attrs["sigma"] == 0.05


def test_pdos_is_the_gaussian_sum(spectrum):
    """Direct unchunked evaluation at a few energies."""
    grid = np.array([-1.0, 0.0, 0.37])
    ds = pdos_dataset(spectrum, grid, sigma=0.1)
    x = grid[None, :] + spectrum.fermi_level - spectrum.energies[:, None]
    gauss = np.exp(-0.5 * (x / 0.1) ** 2) / (0.1 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(ds.dos.values, spectrum.state_weights @ gauss, rtol=1e-10)


def test_windowed_spectrum_needs_coverage(spectrum):
    fermi = spectrum.fermi_level
    window = replace(spectrum, energy_range=(fermi - 0.5, fermi + 0.5),
                     method="shift-invert window")
    pdos_dataset(window, np.linspace(-0.25, 0.25, 11))
    with pytest.raises(MLHError, match="lists only"):
        pdos_dataset(window, np.linspace(-0.3, 0.25, 11))


def test_bad_grids_raise(spectrum):
    with pytest.raises(MLHError, match="empty"):
        energy_grid(1.0, -1.0)
    with pytest.raises(MLHError, match="sigma"):
        pdos_dataset(spectrum, np.zeros(3), sigma=0.0)
    with pytest.raises(MLHError, match="finite"):
        pdos_dataset(spectrum, np.array([0.0, np.nan]))


def test_pdos_netcdf_round_trip_and_figure(spectrum, tmp_path):
    ds = pdos_dataset(spectrum, _full_grid(spectrum, n_points=2000), per_atom=True,
                      provenance={"source": "synthetic"})
    path = write_dataset(ds, tmp_path / "pdos.nc")
    with xr.open_dataset(path) as back:
        xr.testing.assert_identical(back.load(), ds)
    figure = plot_pdos(ds, tmp_path / "pdos.png", l_resolved=True)
    assert figure.stat().st_size > 10_000


# ------------------------------------------------------------ against GPAW
@pytest.fixture(scope="module")
def wse2_gpaw(gpaw_records):
    """(GPAW calculator with every band, record) for the wse2 fixture structure.

    The SCF uses the record's settings (conftest STRUCTURES) with nbands="nao", which only
    adds empty bands, so that GPAW's projected DOS covers every state as ours does.
    """
    from gpaw.new.ase_interface import GPAW

    from mlh.gpaw.reference import gpaw_parameters

    build, settings = STRUCTURES["wse2"]
    _, record = gpaw_records("wse2")
    atoms = build()
    params = gpaw_parameters(atoms, settings, settings.scf_kpts(atoms.cell.array, atoms.pbc))
    atoms.calc = GPAW(**params, nbands="nao", txt=None,
                      symmetry={"point_group": False, "time_reversal": True})
    atoms.get_potential_energy()
    return atoms.calc, record


def _fold(energies, weights, sigma):
    """GPAW's own Gaussian folding (gpaw.utilities.dos.fold; its width is sqrt(2) sigma)."""
    from gpaw.utilities.dos import fold

    return fold(energies, weights, 4000, np.sqrt(2) * sigma)


@pytest.mark.gpaw
def test_subspace_pdos_matches_gpaw_lcaodos(wse2_gpaw):
    """GPAW's LCAO projected DOS from our eigenpairs of the stored H(R), S(R).

    GPAW's orbital-projected DOS for LCAO, gpaw.utilities.dos.LCAODOS, is not Mulliken: it
    projects each state on the subspace of the orbitals m of an atom with the non-orthogonal
    projector, w_n = (C^H S)_{n m} (S_mm)^-1 (S C)_{m n}, times 2 w_k (its weights per atom
    do not add up to 1). We evaluate the same definition with our eigenpairs of the stored
    H(k), S(k) at GPAW's k-points and compare per state (this rattled cell has no degenerate
    states) and as curves folded by GPAW's `fold`.
    """
    from ase.units import Ha
    from gpaw.utilities.dos import LCAODOS

    calc, record = wse2_gpaw
    kpoints, kpoint_weights = calc.get_ibz_k_points(), calc.get_k_point_weights()
    lcaodos = LCAODOS(calc)
    offsets = record.orbital_offsets
    sigma = 0.05
    for atom in range(record.n_atoms):
        eps_skn, w_skn = lcaodos.get_atomic_subspace_pdos(atom, ravel=False)
        eps_skn = eps_skn * Ha  # the new GPAW hands LCAODOS eigenvalues in Hartree
        ours_e, ours_w = [], []
        for k, (kpoint, weight) in enumerate(zip(kpoints, kpoint_weights)):
            S = record.overlap_k(kpoint).toarray()
            eig_n, C_Mn = generalized_eigh(record.hamiltonian_k(kpoint).toarray(), S)
            m = np.arange(offsets[atom], offsets[atom + 1])
            SC = (S @ C_Mn)[m]
            w_n = 2 * weight * np.einsum("mn,mn->n", SC.conj(),
                                         np.linalg.solve(S[np.ix_(m, m)], SC)).real
            np.testing.assert_allclose(eig_n, eps_skn[0, k], atol=1e-6)
            np.testing.assert_allclose(w_n, w_skn[0, k], atol=1e-8)
            ours_e.append(eig_n)
            ours_w.append(w_n)
        _, gpaw_curve = _fold(eps_skn.ravel(), w_skn.ravel(), sigma)
        _, our_curve = _fold(np.concatenate(ours_e), np.concatenate(ours_w), sigma)
        assert np.abs(our_curve - gpaw_curve).max() < 1e-6 * gpaw_curve.max()


@pytest.mark.gpaw
def test_mulliken_pdos_matches_gpaw_wave_functions(wse2_gpaw):
    """pdos_dataset from the stored H(R) equals the Mulliken PDOS of GPAW's own states.

    GPAW's Mulliken analysis (gpaw.lcao.tools.get_mulliken: Q_M = diag(rho S)) gives
    charges only, and fails with the new GPAW (no S_qMM), so the per-state Mulliken
    weights Re[conj(C_nM) (C S^T)_nM] are taken from GPAW's own coefficients C_nM and
    overlaps S_MM, with GPAW's eigenvalues and k-point weights, folded with GPAW's `fold`
    (Gaussian of standard deviation sigma). Our curves come from dense_spectrum on the
    record (its stored H(R), S(R)) and pdos_dataset on the same grid.
    """
    from ase.units import Ha

    calc, record = wse2_gpaw
    sigma = 0.05
    spectrum = dense_spectrum(record, kpoints=calc.get_ibz_k_points(),
                              kpoint_weights=calc.get_k_point_weights())
    channel_M, channel_atom, channel_l = orbital_channels(record)
    symbol_of_atom = np.array([chemical_symbols[z] for z in record.numbers])
    energies, weights = [], []
    for wfs in calc.dft.ibzwfs:
        C_nM, S_MM = wfs.C_nM.data, wfs.S_MM.data
        mulliken_nM = (C_nM.conj() * (C_nM @ S_MM.T)).real
        energies.append(wfs.eig_n * Ha)
        weights.append(wfs.spin_degeneracy * wfs.weight * mulliken_nM)
    energies, weights = np.concatenate(energies), np.concatenate(weights)
    np.testing.assert_allclose(np.sort(energies), np.sort(spectrum.energies), atol=1e-6)

    grid, _ = _fold(energies, weights[:, 0], sigma)
    ours = pdos_dataset(spectrum, grid - spectrum.fermi_level, sigma=sigma)
    for species in ours.species.values:
        for l in ours.l.values:
            orbitals = (symbol_of_atom[channel_atom[channel_M]] == species) & (
                channel_l[channel_M] == l)
            _, gpaw_curve = _fold(energies, weights[:, orbitals].sum(axis=1), sigma)
            our_curve = ours.pdos_species_l.sel(species=species, l=l).values
            assert np.abs(our_curve - gpaw_curve).max() < 1e-6 * max(gpaw_curve.max(), 1.0)
    _, gpaw_total = _fold(energies, weights.sum(axis=1), sigma)
    assert np.abs(ours.dos.values - gpaw_total).max() < 1e-6 * gpaw_total.max()

