"""Large-structure route (analysis/sparse/window.py, analysis/sparse/factor.py) against dense results.

The fixture is a predicted WSe2 record with Se vacancies (bundled model, 4 x 4 orthogonal
cells, ~95 atoms, ~860 orbitals): small enough for dense diagonalization, large enough for
a non-trivial nested dissection. WSe2 with these setups has 6 valence electrons per atom.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
import xarray as xr

from analysis.dos import energy_grid, pdos_dataset
from analysis.hole import hole_concentration
from analysis.sparse.factor import factorize, symbolic_factor
from analysis.sparse.kpm import kpm_pdos
from analysis.sparse.shift_invert import eigenvalue_count, sparse_pencil
from analysis.sparse.window import window_spectrum
from analysis.spectrum import dense_spectrum
from mlh.errors import MLHError
from mlh.record.hamiltonian import Labels
from mlh.record.io import write_dataset
from tests.structures import WSE2_MODEL as MODEL

VALENCE = 6  # electrons per W and per Se atom


@pytest.fixture(scope="session")
def wse2():
    """(record, n_electrons) of a predicted 4 x 4 WSe2 slab with Se vacancies."""
    from mlh.gpaw.structures import wse2_with_vacancies
    from mlh.inference.prediction import predict_record
    from mlh.model.predictor import Predictor

    atoms = wse2_with_vacancies(np.random.default_rng(7), repeat=(4, 4), mean_vacancies=1.5)
    record = predict_record(Predictor.load(MODEL), atoms, "test_large")
    return record, VALENCE * record.n_atoms


@pytest.fixture(scope="session")
def pencil(wse2):
    return sparse_pencil(wse2[0])


@pytest.fixture(scope="session")
def dense(wse2):
    """Dense spectra of the neutral record and with 2 electrons removed / added."""
    record, electrons = wse2
    return {charge: dense_spectrum(record, n_electrons=electrons, charge=charge)
            for charge in (0.0, 2.0, -2.0)}


def _degenerate_groups(energies: np.ndarray, tolerance: float = 1e-6) -> np.ndarray:
    """Group index of each (sorted) energy; energies closer than `tolerance` share one."""
    return np.concatenate([[0], np.cumsum(np.diff(energies) > tolerance)])


def test_factorization_solves_and_counts(wse2, pencil):
    record, _ = wse2
    H, S = pencil.H[0].toarray(), pencil.S.toarray()
    eigenvalues = scipy.linalg.eigh(H, S, eigvals_only=True)
    sigma = 0.5 * (eigenvalues[300] + eigenvalues[301])
    factor = factorize(pencil.symbolic, pencil.H[0].data - sigma * pencil.S.data)
    assert factor.n_negative == 301
    assert factor.n_negative + factor.n_positive == record.n_orbitals
    B = np.random.default_rng(0).standard_normal((record.n_orbitals, 5))
    X = factor.solve(B)
    np.testing.assert_allclose((H - sigma * S) @ X, B, atol=1e-8)
    np.testing.assert_allclose(factor.solve(B[:, 0]), X[:, 0])


@pytest.mark.parametrize("energy", [-12.0, -4.5, -3.0, 5.0])
def test_eigenvalue_count_is_the_dense_count(dense, pencil, energy):
    eigenvalues = dense[0.0].energies
    assert eigenvalue_count(pencil, energy) == np.count_nonzero(eigenvalues < energy)


def test_symbolic_factor_of_a_tridiagonal_chain():
    """Three 2-orbital atoms in a chain: any ordering, exact inertia and solve."""
    rng = np.random.default_rng(1)
    A = sp.random(6, 6, density=1.0, random_state=2).toarray()
    blocks = np.kron(np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]]), np.ones((2, 2)))
    A = (A + A.T) * blocks - 0.3 * np.eye(6)
    pattern = sp.csr_matrix(A)
    graph = sp.csr_matrix(np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    factor = factorize(symbolic_factor(pattern, np.array([2, 2, 2]), graph), pattern.data)
    assert factor.n_negative == np.count_nonzero(np.linalg.eigvalsh(A) < 0)
    b = rng.standard_normal(6)
    np.testing.assert_allclose(A @ factor.solve(b), b, atol=1e-10)


@pytest.mark.parametrize("charge", [2.0, 0.0, -2.0])
def test_window_spectrum_matches_dense(wse2, pencil, dense, charge):
    record, electrons = wse2
    reference = dense[charge]
    window = window_spectrum(record, n_electrons=electrons, charge=charge, pencil=pencil)
    assert window.method == "shift-invert window"
    assert abs(window.fermi_level - reference.fermi_level) < 1e-6  # eV (dense vs sparse)
    lower, upper = window.energy_range
    assert lower <= window.fermi_level - 0.3 and window.fermi_level + 0.5 <= upper
    inside = (reference.energies >= lower) & (reference.energies < upper)
    np.testing.assert_allclose(window.energies, reference.energies[inside], atol=1e-8)
    below = reference.state_weights[reference.energies < lower].sum()
    assert window.electrons_below == pytest.approx(below)
    groups = _degenerate_groups(window.energies)
    summed = lambda p: np.array([p[groups == g].sum(axis=0) for g in range(groups.max() + 1)])
    np.testing.assert_allclose(summed(window.projections), summed(reference.projections[inside]),
                               atol=1e-6)


def test_hole_concentration_of_the_window_route(wse2, pencil, dense):
    record, electrons = wse2
    window = window_spectrum(record, n_electrons=electrons, charge=2.0, pencil=pencil,
                             window=(-0.3, 0.45))
    sparse_holes = hole_concentration(window)
    dense_holes = hole_concentration(dense[2.0])
    assert float(dense_holes.holes_per_cell) > 0.5  # E_F is in the valence band
    assert float(sparse_holes.holes_per_cell) == pytest.approx(float(dense_holes.holes_per_cell),
                                                               rel=1e-8)


@pytest.mark.parametrize("guess", [-25.0, -6.0, 3.0])
def test_a_poor_fermi_guess_costs_factorizations_not_accuracy(wse2, dense, guess):
    record, electrons = wse2
    window = window_spectrum(record, n_electrons=electrons, charge=2.0, fermi_guess=guess)
    assert abs(window.fermi_level - dense[2.0].fermi_level) < 1e-6


def test_spin_polarized_window(wse2):
    record, electrons = wse2
    split = 1.02 * record.H_onsite[0] + 0.2 * record.S_onsite  # not a rigid shift
    polarized = replace(record, H_pair=np.repeat(record.H_pair, 2, axis=0),
                        H_onsite=np.stack([record.H_onsite[0], split]))
    reference = dense_spectrum(polarized, n_electrons=electrons, charge=1.0)
    window = window_spectrum(polarized, n_electrons=electrons, charge=1.0)
    assert abs(window.fermi_level - reference.fermi_level) < 1e-6
    assert set(window.spin.tolist()) == {0, 1}
    np.testing.assert_allclose(window.state_weights, 1.0)
    lower, upper = window.energy_range
    inside = (reference.energies >= lower) & (reference.energies < upper)
    np.testing.assert_allclose(window.energies, np.sort(reference.energies[inside]), atol=1e-8)


def test_kpm_pdos_agrees_with_dense_within_its_error(wse2, pencil, dense, tmp_path):
    record, _ = wse2
    reference = dense[2.0]
    grid = energy_grid(-8.0, 6.0, 1400)
    kpm = kpm_pdos(record, grid, reference.fermi_level, sigma=0.1, n_vectors=16, pencil=pencil)
    exact = pdos_dataset(reference, grid, sigma=0.1)
    for name in ("dos", "pdos_species", "pdos_species_l"):
        error = kpm[f"{name}_stderr"].values
        deviation = (kpm[name] - exact[name]).values
        # pooled over the grid the deviation is one standard error; pointwise within 5
        assert np.sqrt(np.mean(deviation**2)) < 1.5 * np.sqrt(np.mean(error**2)), name
        assert np.mean(np.abs(deviation) < 5 * error + 1e-6) > 0.99, name
    assert kpm.attrs["stochastic_error_relative"] < 0.1
    assert kpm.attrs["resolution"] == pytest.approx(0.1)
    np.testing.assert_allclose(kpm.dos, kpm.pdos_species.sum("species"), rtol=1e-10)
    with xr.open_dataset(write_dataset(kpm, tmp_path / "kpm.nc")) as back:
        xr.testing.assert_identical(back.load(), kpm)


def test_kpm_with_few_moments_states_a_wider_resolution(wse2, pencil, dense):
    record, _ = wse2
    kpm = kpm_pdos(record, energy_grid(-2.0, 2.0, 50), dense[0.0].fermi_level, sigma=0.05,
                   n_moments=200, n_vectors=2, pencil=pencil)
    assert "Jackson" in kpm.attrs["kernel"] and kpm.attrs["resolution"] > 0.3


def test_bad_input_raises(wse2, pencil):
    record, electrons = wse2
    with pytest.raises(MLHError, match="overlap-only"):
        window_spectrum(replace(record, H_pair=None, H_onsite=None), n_electrons=electrons)
    with pytest.raises(MLHError, match="S is not positive definite"):
        sparse_pencil(replace(record, S_onsite=np.zeros_like(record.S_onsite)))
    broken = replace(record, H_pair=record.H_pair.copy())
    broken.H_pair[0, 3] = np.nan  # after validation, as a corrupted array would be
    with pytest.raises(MLHError, match="NaN"):
        window_spectrum(broken, n_electrons=electrons)
    with pytest.raises(MLHError, match="no electron count"):
        window_spectrum(replace(record, labels=Labels()), pencil=pencil)
    with pytest.raises(MLHError, match="empty"):
        window_spectrum(record, n_electrons=electrons, window=(0.2, -0.2), pencil=pencil)
    with pytest.raises(MLHError, match="do not fit"):
        window_spectrum(record, n_electrons=electrons, charge=-1e6, pencil=pencil)
    with pytest.raises(MLHError, match="sigma"):
        kpm_pdos(record, energy_grid(-1, 1, 10), 0.0, sigma=0.0, pencil=pencil)
    with pytest.raises(MLHError, match="spin channel"):
        eigenvalue_count(pencil, 0.0, spin=1)


@pytest.mark.slow
def test_window_route_on_a_300_atom_slab():
    """~290 atoms, ~2,600 orbitals: E_F, holes and the window states as dense (~1 min)."""
    from mlh.gpaw.structures import wse2_with_vacancies
    from mlh.inference.prediction import predict_record
    from mlh.model.predictor import Predictor

    atoms = wse2_with_vacancies(np.random.default_rng(8), repeat=(8, 6), mean_vacancies=2.0)
    record = predict_record(Predictor.load(MODEL), atoms, "test_large slow")
    electrons = VALENCE * record.n_atoms
    reference = dense_spectrum(record, n_electrons=electrons, charge=3.0)
    window = window_spectrum(record, n_electrons=electrons, charge=3.0, window=(-0.3, 0.45))
    assert abs(window.fermi_level - reference.fermi_level) < 1e-6
    lower, upper = window.energy_range
    inside = (reference.energies >= lower) & (reference.energies < upper)
    np.testing.assert_allclose(window.energies, reference.energies[inside], atol=1e-8)
    assert float(hole_concentration(window).holes_per_cell) == pytest.approx(
        float(hole_concentration(reference).holes_per_cell), rel=1e-8)
