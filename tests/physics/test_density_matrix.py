"""Density matrices from (H, S): sum rules, known values, degeneracies, metals, bad input."""

import numpy as np
import pytest

from mlh.errors import MLHError
from physics.density_matrix import (
    density_matrices,
    density_matrices_for_record,
    density_matrix_blocks,
    generalized_eigh,
    orbital_atoms,
)
from physics.mulliken import mulliken_charges, mulliken_populations


def random_problem(n=8, seed=0, complex_=False):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) + (1j * rng.normal(size=(n, n)) if complex_ else 0)
    H = (A + A.conj().T) / 2
    B = 0.2 * (rng.normal(size=(n, n)) + (1j * rng.normal(size=(n, n)) if complex_ else 0))
    S = np.eye(n) + (B + B.conj().T) / 4
    return H, S


@pytest.mark.parametrize("complex_", [False, True])
def test_sum_rules_and_energy_weighted_relation(complex_):
    H, S = random_problem(complex_=complex_)
    dm = density_matrices(H, S, n_electrons=6, width=0.05)
    rho, W = dm.rho[0, 0], dm.energy_weighted[0, 0]
    assert np.allclose(rho, rho.conj().T) and np.allclose(W, W.conj().T)
    assert dm.electron_count(S) == pytest.approx(6, abs=1e-9)
    # S W = H rho holds for any occupations (H c = eps S c).
    assert np.allclose(S @ W, H @ rho, atol=1e-10)
    assert dm.trace_with(H) == pytest.approx(dm.band_energy, abs=1e-10)
    assert np.trace(W @ S).real == pytest.approx(dm.band_energy, abs=1e-10)
    assert dm.entropy_energy <= 0


def test_idempotent_at_low_temperature():
    H, S = random_problem(n=10, seed=1)
    dm = density_matrices(H, S, n_electrons=8, width=1e-4)
    rho = dm.rho[0, 0]
    # Spin-paired: rho = 2 P with P S P = P for integer occupations.
    assert np.allclose(rho @ S @ rho, 2 * rho, atol=1e-8)
    assert np.allclose(dm.occupations[0, 0], [1] * 4 + [0] * 6, atol=1e-12)
    assert abs(dm.entropy_energy) < 1e-12


def test_degenerate_shell_is_shared_and_symmetric():
    # Four identical sites on a ring: levels -2, 0, 0, 2 (t = -1). Four electrons fill the
    # bottom level and half of the degenerate pair; a cyclic shift must leave rho unchanged.
    n = 4
    H = np.zeros((n, n))
    for i in range(n):
        H[i, (i + 1) % n] = H[(i + 1) % n, i] = -1.0
    S = np.eye(n)
    dm = density_matrices(H, S, n_electrons=4, width=0.01)
    f = dm.occupations[0, 0]
    assert f[0] == pytest.approx(1) and f[1] == pytest.approx(f[2]) == pytest.approx(0.5)
    P = np.roll(np.eye(n), 1, axis=0)
    assert np.allclose(P @ dm.rho[0, 0] @ P.T, dm.rho[0, 0], atol=1e-12)
    assert dm.fermi_level == pytest.approx(0.0, abs=1e-9)
    # Two degenerate half-occupied states: -TS = width * 2 * 2 * (2 * 0.5 ln 0.5).
    assert dm.entropy_energy == pytest.approx(0.01 * 4 * np.log(0.5), rel=1e-9)


def test_metallic_chain_band_energy_known_value():
    # One orbital per cell, t = -1 eV: eps(k) = -2 cos(2 pi k); half filling gives E_F = 0
    # and E_band = 2 * integral_{-1/4}^{1/4} -2 cos(2 pi k) dk = -4 / pi eV per cell.
    n_k = 400
    kpoints = np.zeros((n_k, 3))
    kpoints[:, 0] = (np.arange(n_k) + 0.5) / n_k - 0.5
    H = -2 * np.cos(2 * np.pi * kpoints[:, 0])[:, None, None].astype(complex)
    S = np.ones((n_k, 1, 1), complex)
    dm = density_matrices(H, S, n_electrons=1, kpoints=kpoints, width=0.001)
    assert dm.fermi_level == pytest.approx(0.0, abs=1e-9)
    assert dm.electron_count(S) == pytest.approx(1.0, abs=1e-9)
    assert dm.band_energy == pytest.approx(-4 / np.pi, abs=2e-4)
    assert dm.entropy_energy < 0


def test_spin_polarised_channels_hold_one_electron_per_state():
    H, S = random_problem(n=6, seed=2)
    H_s = np.stack([H, H + 0.3 * np.eye(6)])[:, None]  # (2 spins, 1 k, 6, 6)
    dm = density_matrices(H_s, S, n_electrons=5, width=0.01)
    assert dm.spin_degeneracy == 1
    assert dm.electron_count(S) == pytest.approx(5, abs=1e-9)
    populations = mulliken_populations(dm, S, np.arange(6) // 2)
    assert populations.shape == (2, 3)
    assert populations.sum() == pytest.approx(5, abs=1e-9)
    assert populations[0].sum() > populations[1].sum()  # the lower channel holds more


@pytest.mark.parametrize("change, match", [
    (lambda H, S: (H * np.nan, S), "H .*NaN"),
    (lambda H, S: (H + np.triu(np.ones_like(H), 1), S), "H .*not symmetric"),
    (lambda H, S: (H, S - 2 * np.eye(len(S))), "S .*not positive definite"),
    (lambda H, S: (H, S[:-1, :-1]), "S has shape"),
    (lambda H, S: (H[:, :-1], S), "square"),
])
def test_bad_matrices(change, match):
    H, S = change(*random_problem())
    with pytest.raises(MLHError, match=match):
        density_matrices(H, S, n_electrons=4)


@pytest.mark.parametrize("n_electrons", [0, -1, 16, 17, np.nan])
def test_impossible_electron_count(n_electrons):
    H, S = random_problem(n=8)
    with pytest.raises(MLHError, match="electron"):
        density_matrices(H, S, n_electrons=n_electrons)


def test_bad_width_and_kpoints():
    H, S = random_problem()
    with pytest.raises(MLHError, match="width must be positive"):
        density_matrices(H, S, 4, width=0.0)
    with pytest.raises(MLHError, match="k-points"):
        density_matrices(np.stack([H, H]), np.stack([S, S]), 4)
    with pytest.raises(MLHError, match="weights"):
        density_matrices(H, S, 4, kpoints=np.zeros((1, 3)), kpoint_weights=[-1.0])


def test_generalized_eigh_messages_name_the_place():
    H, S = random_problem()
    with pytest.raises(MLHError, match="at k-point 7"):
        generalized_eigh(H, -S, "at k-point 7")


# ------------------------------------------------------------------ real GPAW records
@pytest.mark.gpaw
@pytest.mark.parametrize("name", ["water", "wse2"])
def test_gpaw_record_sum_rules(gpaw_records, name):
    atoms, record = gpaw_records(name)
    from mlh.gpaw.record_settings import settings_from_record
    from physics.dft.functional import valence_charges

    dm = density_matrices_for_record(record)
    labels = record.labels
    real = dm.n_kpoints == 1 and not dm.kpoints.any()
    S = np.array([record.overlap_k(None if real else k).toarray() for k in dm.kpoints])
    H = np.array([[record.hamiltonian_k(None if real else k).toarray() for k in dm.kpoints]])
    n_bands = labels.eigenvalues.shape[-1]
    assert np.abs(dm.eigenvalues[:, :, :n_bands] - labels.eigenvalues).max() < 1e-5
    assert dm.electron_count(S) == pytest.approx(labels.n_electrons, abs=1e-8)
    assert dm.trace_with(H) == pytest.approx(dm.band_energy, abs=1e-8)

    # Record-layout blocks reproduce N and E_band from the stored H(R), S(R) values.
    rho_pair, rho_onsite = density_matrix_blocks(dm, record)
    N = rho_onsite[0] @ record.S_onsite + 2 * rho_pair[0] @ record.S_pair
    E = rho_onsite[0] @ record.H_onsite[0] + 2 * rho_pair[0] @ record.H_pair[0]
    assert N == pytest.approx(labels.n_electrons, abs=1e-8)
    assert E == pytest.approx(dm.band_energy, abs=1e-7)
    W_pair, W_onsite = density_matrix_blocks(dm, record, energy_weighted=True)
    assert W_onsite[0] @ record.S_onsite + 2 * W_pair[0] @ record.S_pair == pytest.approx(
        dm.band_energy, abs=1e-7)

    # Mulliken: populations add up to N, charges of the neutral structure to zero.
    charges = mulliken_charges(dm, S, orbital_atoms(record),
                               valence_charges(atoms, settings_from_record(record)))
    assert charges.sum() == pytest.approx(0.0, abs=1e-8)
    if name == "water":
        assert charges[0] < -0.3 and charges[1] > 0.1 and charges[2] > 0.1  # O^δ- H^δ+
