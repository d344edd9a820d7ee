"""The forces of the installed state (physics.dft.harris_forces.state_forces): with no
Harris-Foulkes share they are GPAW's own forces, term by term reassembled; at GPAW's converged
H the Harris-Foulkes and Kohn-Sham states have the same forces (rho' = rho there). That the
Harris and mean forces are -dA/dR is checked on the whole route (test_forces.py)."""

from dataclasses import replace

import numpy as np
import pytest

from mlh.gpaw.record_settings import record_atoms
from physics.dft.functional import functional_at_state, gpaw_calculation, record_inputs
from physics.dft.harris_forces import state_forces

pytestmark = pytest.mark.gpaw


def installed(record):
    """GPAW's DFT object with the record's H installed, and the functional's result with
    GPAW's forces of that state."""
    settings, kpts, hamiltonian_k, overlap_k = record_inputs(record)
    dft = gpaw_calculation(record_atoms(record), settings, kpts)
    result = functional_at_state(dft, hamiltonian_k, forces=True, overlap_k=overlap_k,
                                 keep_output_hamiltonians=True)
    return dft, result


@pytest.mark.parametrize("name", ["water", "wse2"])
def test_without_harris_share_they_are_gpaws_forces(gpaw_records, name):
    """A perturbed (not self-consistent) H, at Γ (real) and on a 3x3x1 k grid (complex)."""
    _, record = gpaw_records(name)
    noise = 0.01 * np.random.default_rng(3).normal(size=record.H_pair.shape)
    dft, result = installed(replace(record, H_pair=record.H_pair + noise))
    state = state_forces(dft, result.harris_states, 0.0)
    np.testing.assert_allclose(state.forces, result.forces, atol=1e-6)
    assert not state.kernel_matrix.any()


def test_at_the_converged_hamiltonian_harris_adds_nothing(gpaw_records):
    _, record = gpaw_records("wse2")
    dft, result = installed(record)
    state = state_forces(dft, result.harris_states, 1.0)
    assert np.abs(state.forces - result.forces).max() < 5e-3  # eV/Å: the SCF's convergence
    assert np.abs(state.kernel_matrix).max() < 1e-2 * np.abs(result.output_hamiltonians).max()
