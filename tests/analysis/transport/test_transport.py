"""Transport on a real GPAW WSe2 record tiled along a1: ballistic channel counts, the recursive
solver against a dense inverse, invariance under lengthening, T_LR = T_RL, Landauer current."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.linalg as sl

from analysis.transport.device import two_terminal_device
from analysis.transport.green import broadening, recursive_transmission
from analysis.transport.transmission import CONDUCTANCE_QUANTUM, landauer_current, transmission
from mlh.errors import MLHError
from mlh.io.sisl import record_to_sisl, sisl_to_record

ETA = 1e-10         # eV; T - integer ~ eta^2 (1e-6 at the default 1e-4), device length effects ~ eta
K = np.array([0.0, 0.2, 0.0])


def tiled(record, cells: int):
    """The record repeated `cells` times along a1 (through sisl's tile)."""
    return sisl_to_record(record_to_sisl(record).tile(cells, 0), basis_name=record.basis.name)


def with_potential(record, atom: int, shift: float):
    """A local potential step: H -> H + shift S on the on-site block of `atom` (eV)."""
    start, stop = record.onsite_value_offsets[atom], record.onsite_value_offsets[atom + 1]
    onsite = record.H_onsite.copy()
    onsite[:, start:stop] += shift * record.S_onsite[start:stop]
    return dataclasses.replace(record, H_onsite=onsite)


@pytest.fixture(scope="module")
def wse2(gpaw_records):
    return gpaw_records("wse2")[1]


@pytest.fixture(scope="module")
def defect_device(wse2):
    """12 cells along a1 (PL = 4 cells), a 0.8 eV potential on the W atom of cell 6."""
    device = tiled(wse2, 12)
    return with_potential(device, 6 * wse2.n_atoms + int(np.flatnonzero(wse2.numbers == 74)[0]), 0.8)


def bands_along_k1(record, k_transverse: np.ndarray, points: int = 120) -> np.ndarray:
    """(points, n_bands) eigenvalues (eV) on a closed loop of k1 at fixed k2."""
    ks = np.column_stack([np.arange(points) / points, np.full(points, k_transverse[1]), np.zeros(points)])
    return np.array([sl.eigh(record.hamiltonian_k(k).toarray(), record.overlap_k(k).toarray(),
                             eigvals_only=True) for k in ks])


def test_pristine_transmission_counts_the_bands_crossing_e(wse2):
    """T(E) is the number of right-moving bands at E: half the crossings of E along the k1 loop,
    at energies midway between neighbouring band extrema (plateaus, away from band edges)."""
    bands = bands_along_k1(wse2, K)
    slope = np.diff(bands, axis=0, append=bands[:1])
    extrema = np.sort(bands[(slope * np.roll(slope, 1, axis=0)) < 0])
    fermi = wse2.labels.fermi_level
    extrema = extrema[np.abs(extrema - fermi) < 2.5]
    widest = np.argsort(np.diff(extrema))[-4:]
    energies = (extrema[widest] + extrema[widest + 1]) / 2
    above = bands[None, :, :] > energies[:, None, None]
    expected = np.sum(above != np.roll(above, 1, axis=1), axis=(1, 2)) // 2
    assert len(set(expected.tolist())) > 1          # several plateaus, not one
    device = two_terminal_device(tiled(wse2, 8), axis=0, electrode_cells=8)
    result = transmission(device, energies, kpoints=K, eta=ETA)
    np.testing.assert_allclose(result.left_to_right[0], expected, rtol=0, atol=1e-6)
    # the same from the primitive record as electrode on both sides
    from_record = two_terminal_device(tiled(wse2, 8), axis=0, electrode=wse2)
    np.testing.assert_allclose(transmission(from_record, energies[:1], kpoints=K, eta=ETA).left_to_right[0],
                               expected[:1], rtol=0, atol=1e-6)


def test_recursive_solver_equals_a_dense_inverse(wse2, defect_device):
    from sisl.physics import RecursiveSI

    device = two_terminal_device(defect_device, axis=0, electrode_cells=12)
    assert len(device.blocks) >= 3
    H = device.hamiltonian.Hk(K, format="array")
    S = device.hamiltonian.Sk(K, format="array")
    first, last = device.blocks[0], device.blocks[-1]
    for energy in wse2.labels.fermi_level + np.array([-1.3, 1.6]):
        sigma_left = RecursiveSI(device.left.hamiltonian, "-A", eta=ETA).self_energy(energy, k=K)
        sigma_right = RecursiveSI(device.right.hamiltonian, "+A", eta=ETA).self_energy(energy, k=K)
        matrix = energy * S - H
        matrix[np.ix_(first, first)] -= sigma_left
        matrix[np.ix_(last, last)] -= sigma_right
        green = np.linalg.inv(matrix)
        corner = green[np.ix_(first, last)]
        dense = np.trace(broadening(sigma_left) @ corner @ broadening(sigma_right) @ corner.conj().T).real
        plain = energy * S - H
        blocks = device.blocks
        recursive, _ = recursive_transmission(
            [plain[np.ix_(b, b)] for b in blocks],
            [plain[np.ix_(a, b)] for a, b in zip(blocks[:-1], blocks[1:])],
            [plain[np.ix_(b, a)] for a, b in zip(blocks[:-1], blocks[1:])], sigma_left, sigma_right)
        assert 0.05 < dense < 3
        assert abs(recursive - dense) < 1e-10


def test_transmission_is_unchanged_by_extra_pristine_cells(wse2, defect_device):
    w_atom = int(np.flatnonzero(wse2.numbers == 74)[0])
    longer = with_potential(tiled(wse2, 14), 7 * wse2.n_atoms + w_atom, 0.8)
    energies = wse2.labels.fermi_level + np.array([-1.3, 1.6])
    short = transmission(two_terminal_device(defect_device, axis=0, electrode_cells=12), energies, K, eta=ETA)
    long = transmission(two_terminal_device(longer, axis=0, electrode_cells=14), energies, K, eta=ETA)
    pristine = transmission(two_terminal_device(tiled(wse2, 12), axis=0, electrode_cells=12), energies, K,
                            eta=ETA)
    assert np.abs(short.left_to_right - pristine.left_to_right).max() > 1e-3   # the defect scatters
    np.testing.assert_allclose(long.left_to_right, short.left_to_right, rtol=0, atol=1e-8)
    # time reversal / current conservation: left -> right equals right -> left
    np.testing.assert_allclose(short.right_to_left, short.left_to_right, rtol=0, atol=1e-10)
    np.testing.assert_allclose(long.right_to_left, long.left_to_right, rtol=0, atol=1e-10)


def test_atoms_wrapped_to_the_far_face_or_outside_the_cell_change_nothing(wse2):
    """The same device with atom 0 moved by +a1 (as GPAW wraps x = -0.001 Å to x = L - 0.001 Å)
    and atom 4 by -a1, pair shifts adjusted so that every pair vector is unchanged."""
    device = tiled(wse2, 8)
    cells = np.zeros(device.n_atoms, dtype=np.int64)
    cells[0], cells[4] = 1, -1
    moved = dataclasses.replace(
        device, positions=device.positions + np.outer(cells, device.cell[0]),
        pair_shift=device.pair_shift - np.outer(cells[device.pair_j] - cells[device.pair_i], [1, 0, 0]))
    np.testing.assert_allclose(moved.pair_vectors, device.pair_vectors, atol=1e-12)
    energy = wse2.labels.fermi_level + np.array([1.6])
    results = [transmission(two_terminal_device(r, axis=0, electrode_cells=8), energy, K, eta=ETA).left_to_right
               for r in (device, moved)]
    np.testing.assert_allclose(results[1], results[0], rtol=0, atol=1e-10)


def test_electrodes_that_do_not_match_the_device_ends_are_refused(wse2):
    device = tiled(wse2, 12)
    with pytest.raises(MLHError, match="do not hold the same atoms"):
        two_terminal_device(device, axis=0, electrode_cells=11)
    shifted = dataclasses.replace(wse2, H_onsite=wse2.H_onsite + 0.3 * wse2.S_onsite,
                                  H_pair=wse2.H_pair + 0.3 * wse2.S_pair)     # H + 0.3 S
    with pytest.raises(MLHError, match="in-layer H differs from the device's end"):
        two_terminal_device(device, axis=0, electrode=shifted)
    with pytest.raises(MLHError, match="not periodic in the electrode"):
        two_terminal_device(device, axis=2, electrode=wse2)


def test_landauer_current_of_a_constant_transmission_is_g0_t_v():
    energies = np.linspace(-1.0, 1.0, 4001)
    for bias, temperature in ((0.3, 300.0), (-0.5, 50.0)):
        current = landauer_current(energies, np.full_like(energies, 2.0), 0.0, bias, temperature)
        assert current == pytest.approx(CONDUCTANCE_QUANTUM * 2.0 * bias, rel=1e-6)
    with pytest.raises(MLHError, match="misses the bias window"):
        landauer_current(energies, np.ones_like(energies), 0.0, 2.0, 300.0)
