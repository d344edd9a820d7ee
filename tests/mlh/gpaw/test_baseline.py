"""The zeroth-step Hamiltonian H0(R) (GPAW's KS Hamiltonian at its initial density).

H0(R) is reconstructed from Bloch matrices on the alias-free grid; here it must reproduce
GPAW's own initial-density H(k), built independently at the SCF's k-points (which are
not on that grid), for a molecule and a periodic cell with k-points.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlh.gpaw.reference import bloch_matrices, gpaw_parameters, reference_record
from mlh.record.io import read_record, write_record
from tests.structures import STRUCTURES


def baseline_record(name: str, **changes):
    build, settings = STRUCTURES[name]
    atoms = build()
    return atoms, settings, reference_record(atoms, settings.model_copy(update=changes))


def gpaw_initial_hamiltonians(atoms, settings):
    """GPAW's own H(k) (eV), S(k) and IBZ k-points at the initial density, SCF k grid."""
    from gpaw.new.calculation import DFT

    params = gpaw_parameters(atoms, settings, settings.scf_kpts(atoms.cell.array, atoms.pbc))
    dft = DFT(atoms, **params, symmetry={"point_group": False, "time_reversal": True},
              txt=None, converge=False)
    return bloch_matrices(dft)


@pytest.mark.parametrize("name", ["water", "wse2"])
def test_baseline_reproduces_gpaw_initial_hamiltonian(name):
    atoms, settings, record = baseline_record(name, task="baseline")
    assert record.has_baseline and not record.has_hamiltonian
    assert record.provenance["baseline"].startswith("gpaw initial density")
    H_skMM, S_kMM, kpoints = gpaw_initial_hamiltonians(atoms, settings)
    if name == "wse2":
        assert np.any(np.abs(kpoints).sum(axis=1) > 0.1), "a non-Γ k-point must be checked"
    scale = np.abs(H_skMM).max()
    for k, (H_gpaw, S_gpaw) in enumerate(zip(H_skMM[0], S_kMM)):
        kpoint = kpoints[k] if np.any(kpoints[k]) else None
        np.testing.assert_allclose(record.overlap_k(kpoint).toarray(), S_gpaw, atol=1e-8)
        error = np.abs(record.baseline_k(kpoint).toarray() - H_gpaw).max()
        assert error < 1e-8 * scale, f"{name}, k = {kpoints[k]}: H0(k) differs by {error:.2e} eV"


def test_scf_record_carries_the_same_baseline_and_round_trips(tmp_path, gpaw_records):
    _, settings, scf = baseline_record("water", baseline=True)
    _, _, alone = baseline_record("water", task="baseline")
    _, plain = gpaw_records("water")
    np.testing.assert_array_equal(scf.pair_i, alone.pair_i)
    np.testing.assert_allclose(scf.H0_pair, alone.H0_pair, atol=1e-10)
    np.testing.assert_allclose(scf.H0_onsite, alone.H0_onsite, atol=1e-10)
    np.testing.assert_allclose(scf.H_onsite, plain.H_onsite, atol=1e-6)
    # H0 is not the SCF H, but close to it (the SCF correction is small off-site)
    difference = np.abs(scf.H0_onsite - scf.H_onsite).max()
    assert 1e-3 < difference < 5.0
    back = read_record(write_record(scf, tmp_path / "water.nc"))
    np.testing.assert_array_equal(back.H0_pair, scf.H0_pair)
    np.testing.assert_array_equal(back.H0_onsite, scf.H0_onsite)
    assert back.provenance["baseline"] == scf.provenance["baseline"]
