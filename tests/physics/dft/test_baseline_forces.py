"""-d/dR Tr[Y H0(R)] (physics.dft.baseline_forces), the zeroth-step Hamiltonian's part of a
correction model's forces, equals central finite differences of GPAW's own H0 for a
molecule (water in a box, Γ) and a periodic cell with a complex k-point (quartz, 1x1x2);
a charged Y is refused."""

import numpy as np
import pytest
from ase import Atoms

from mlh.errors import MLHError
from mlh.gpaw.reference import bloch_matrices
from mlh.gpaw.settings import GPAWSettings
from physics.dft.baseline_forces import baseline_trace_forces
from physics.dft.functional import gpaw_calculation
from tests.structures import quartz, water

pytestmark = pytest.mark.gpaw

STEP = 1e-3
"""Å, central differences of H0."""

TOLERANCE = 1e-3
"""eV/Å; measured differences 2e-6 to 1e-4 (water) and 4e-6 to 2e-4 (quartz) on forces of
0.1-11 eV/Å."""


def neutral_random_matrices(dft, seed: int) -> np.ndarray:
    """(1, k, M, M) random Hermitian Y with sum_k Tr[Y S] = 0, GPAW's k weights included."""
    rng = np.random.default_rng(seed)
    wfs_list = list(dft.ibzwfs)
    S0 = wfs_list[0].S_MM.data
    Y = np.zeros((1, len(wfs_list), *S0.shape), S0.dtype)
    for wfs in wfs_list:
        S = wfs.S_MM.data
        A = rng.normal(size=S.shape) + (1j * rng.normal(size=S.shape) if np.iscomplexobj(S) else 0)
        Y_k = 0.05 * (A + A.conj().T)
        S_inv = np.linalg.inv(S)
        Y_k -= np.sum(Y_k * S) / np.sum(S_inv.conj() * S) * S_inv.conj()  # remove the charge
        Y[0, wfs.k] = wfs.weight * Y_k
    return Y


def trace(atoms: Atoms, settings: GPAWSettings, kpts, Y: np.ndarray) -> float:
    """sum_k sum_mu nu Y H0 (eV) with GPAW's H0 of `atoms`."""
    H0_skMM, _, _ = bloch_matrices(gpaw_calculation(atoms, settings, kpts))
    return float(np.sum(Y * H0_skMM).real)


@pytest.mark.parametrize("build, kpts, components", [
    (water, (1, 1, 1), [(0, 2), (1, 1), (2, 0)]),   # O, both H
    (quartz, (1, 1, 2), [(0, 2), (3, 0)]),          # Si, O
])
def test_h0_forces_equal_finite_differences(build, kpts, components):
    atoms, settings = build(), GPAWSettings()
    dft = gpaw_calculation(atoms, settings, kpts)
    Y = neutral_random_matrices(dft, seed=0)
    forces = baseline_trace_forces(dft, Y)
    for atom, axis in components:
        moved = [atoms.copy(), atoms.copy()]
        moved[0].positions[atom, axis] += STEP
        moved[1].positions[atom, axis] -= STEP
        difference = -(trace(moved[0], settings, kpts, Y) - trace(moved[1], settings, kpts, Y)) / (2 * STEP)
        assert forces[atom, axis] == pytest.approx(difference, abs=TOLERANCE)
    assert np.abs(forces).max() > 1.0  # a real test: the forces are not small


def test_charged_matrix_is_refused():
    dft = gpaw_calculation(water(), GPAWSettings(), (1, 1, 1))
    S = next(iter(dft.ibzwfs)).S_MM.data
    with pytest.raises(MLHError, match="Y carries a charge of 1 electrons"):
        baseline_trace_forces(dft, np.linalg.inv(S)[None, None] / len(S))
