"""Real GPAW runs: stored H(R), S(R) reproduce GPAW's own eigenvalues and structure."""

import numpy as np
import pytest
import scipy.linalg as sla
from ase import Atoms
from ase.build import molecule

from mlh.errors import MLHError
from mlh.gpaw.reference import bloch_matrices, check_elements, reference_record
from mlh.gpaw.settings import GPAWSettings
from mlh.record.realspace import blocks_from_bloch, unfold_time_reversal

pytestmark = pytest.mark.gpaw


def eigenvalue_errors(record) -> list[tuple[np.ndarray, float]]:
    """Per stored k-point: max |eig(H(k), S(k)) - GPAW eigenvalue| (eV)."""
    labels = record.labels
    errors = []
    for n, k in enumerate(labels.kpoints):
        for spin in range(record.n_spins):
            eig = sla.eigh(record.hamiltonian_k(k, spin).toarray(),
                           record.overlap_k(k).toarray(), eigvals_only=True)
            reference = labels.eigenvalues[spin, n]
            errors.append((k, np.abs(eig[: len(reference)] - reference).max()))
    return errors


@pytest.mark.parametrize("name", ["water", "wse2", "quartz"])
def test_eigenvalues_reproduce_gpaw(gpaw_records, name):
    _, record = gpaw_records(name)
    errors = eigenvalue_errors(record)
    kpoints = np.array([k for k, _ in errors])
    assert np.any(np.all(np.abs(kpoints) < 1e-12, axis=1)), "Γ must be among the checked k"
    if name == "wse2":
        assert np.any(np.abs(kpoints).sum(axis=1) > 0.1), "a non-Γ k-point must be checked"
        assert np.any(record.pair_i == record.pair_j), "primitive cell has self-images"
    worst = max(err for _, err in errors)
    assert worst < 1e-5, f"{name}: eigenvalues differ by {worst:.2e} eV"


@pytest.mark.parametrize("name", ["water", "wse2", "quartz"])
def test_overlap_is_symmetric_positive_definite(gpaw_records, name):
    _, record = gpaw_records(name)
    for k in [None, np.array([0.25, 0.1, 0.0])]:
        S = record.overlap_k(k).toarray()
        np.testing.assert_allclose(S, S.conj().T, atol=1e-14)
        assert sla.eigvalsh(S).min() > 1e-4


def test_partner_blocks_are_transposes(gpaw_records):
    """GPAW's own (j, i, -R) blocks equal the stored (i, j, R) blocks transposed."""
    atoms, record = gpaw_records("wse2")
    from gpaw.new.ase_interface import GPAW

    from mlh.gpaw.reference import gpaw_parameters

    symmetry = {"point_group": False, "time_reversal": True}
    atoms = atoms.copy()
    atoms.calc = GPAW(**gpaw_parameters(atoms, GPAWSettings(setups={"W": "6"}, kpts=(3, 3, 1)),
                                         (3, 3, 1)), symmetry=symmetry, txt=None)
    atoms.get_potential_energy()
    grid = np.array([int(n) for n in record.provenance["realspace_kpts"].split("x")])
    dft = atoms.calc.fixed_density(kpts={"size": tuple(grid), "gamma": True},
                                   symmetry=symmetry, txt=None).dft
    H_skMM, _, ibz = bloch_matrices(dft)
    H_full = unfold_time_reversal(H_skMM, ibz, grid)[0]
    counts = record.orbital_counts
    forward, _, _ = blocks_from_bloch(H_full, grid, record.pair_i, record.pair_j,
                                      record.pair_shift, counts)
    reverse, _, _ = blocks_from_bloch(H_full, grid, record.pair_j, record.pair_i,
                                      -record.pair_shift, counts)
    np.testing.assert_allclose(forward, record.H_pair[0], atol=1e-6)
    for p in range(record.n_pairs):
        start, stop = record.pair_value_offsets[p], record.pair_value_offsets[p + 1]
        block = forward[start:stop].reshape(counts[record.pair_i[p]], counts[record.pair_j[p]])
        partner = reverse[start:stop].reshape(counts[record.pair_j[p]], counts[record.pair_i[p]])
        np.testing.assert_allclose(partner, block.T, atol=1e-8)


def test_overlap_only_record_equals_scf_overlap(gpaw_records):
    """Without H, only pairs with non-negligible S are kept; those equal the SCF record's S."""
    atoms, scf = gpaw_records("wse2")
    overlap = reference_record(atoms, GPAWSettings(setups={"W": "6"}, kpts=(3, 3, 1),
                                                   task="overlap"))
    assert not overlap.has_hamiltonian
    np.testing.assert_allclose(overlap.S_onsite, scf.S_onsite, atol=1e-10)
    scf_index = {(i, j, tuple(R)): p for p, (i, j, R) in
                 enumerate(zip(scf.pair_i, scf.pair_j, scf.pair_shift))}
    found = set()
    for p, (i, j, R) in enumerate(zip(overlap.pair_i, overlap.pair_j, overlap.pair_shift)):
        q = scf_index[(i, j, tuple(R))]
        found.add(q)
        np.testing.assert_allclose(overlap.pair_block(overlap.S_pair, p),
                                   scf.pair_block(scf.S_pair, q), atol=1e-10)
    for q in set(range(scf.n_pairs)) - found:
        assert np.abs(scf.pair_block(scf.S_pair, q)).max() < 1e-9
    np.testing.assert_allclose(overlap.overlap_k(np.array([0.2, 0.1, 0])).toarray(),
                               scf.overlap_k(np.array([0.2, 0.1, 0])).toarray(), atol=1e-8)


def test_labels_are_present_and_consistent(gpaw_records):
    atoms, record = gpaw_records("water")
    labels = record.labels
    assert labels.n_electrons == 8
    assert labels.forces.shape == (3, 3)
    # no net force up to GPAW's grid (egg-box) error
    np.testing.assert_allclose(labels.forces.sum(axis=0), 0, atol=0.2)
    assert labels.eigenvalues[0, 0, 3] < labels.fermi_level < labels.eigenvalues[0, 0, 4]
    for key in ["xc", "basis", "grid_spacing_angstrom", "code_version", "scf_kpts",
                "realspace_kpts", "density_convergence", "setups"]:
        assert key in record.provenance


def test_ghost_atom_carries_basis_but_no_electrons():
    """A ghost O in H2O: its basis stays, its 6 valence electrons go (closed-shell H2 left:
    a ghost H would leave a 7-electron radical, whose SCF takes 119 iterations)."""
    atoms = molecule("H2O", vacuum=3.5)
    atoms.arrays["ghost"] = np.array([True, False, False])
    record = reference_record(atoms, GPAWSettings(forces=False))
    assert record.ghost.tolist() == [True, False, False]
    assert record.labels.n_electrons == 2
    assert record.orbital_counts[0] == 9  # O szp(dzp): 2s + 2p + d polarisation


def test_missing_basis_is_reported():
    with pytest.raises(MLHError, match="element Fr: no PAW setup or basis"):
        check_elements({"Fr"}, GPAWSettings())
    with pytest.raises(MLHError, match="element Se: no PAW setup"):
        check_elements({"Se"}, GPAWSettings(setups={"Se": "nosuch"}))


def test_failed_scf_is_reported():
    atoms = molecule("H2O", vacuum=3.5)
    with pytest.raises(MLHError, match="SCF did not converge in 2 iterations"):
        reference_record(atoms, GPAWSettings(maxiter=2))


@pytest.mark.parametrize("task", ["baseline", "overlap"])
def test_missing_basis_is_reported_without_scf(task):
    """The tasks without an SCF take their setups from gpaw_setups: a missing basis file is
    one clear message, not GPAW's traceback."""
    atoms = Atoms("Fm", positions=[[2.0, 2.0, 2.0]], cell=[4.0, 4.0, 4.0], pbc=False)
    with pytest.raises(MLHError, match=r'GPAW could not create setups for this structure: '
                                       r'Could not find required basis set file "Fm\.dzp\.basis"'):
        reference_record(atoms, GPAWSettings(task=task))
