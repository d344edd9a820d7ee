"""Records <-> sisl: eigenvalues at random k, exact round trips, TBtrans .TSHS files, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sl

from mlh.errors import MLHError
from mlh.io.sisl import record_to_sisl, sisl_to_record, write_tshs
from tests.synthetic import random_record


def record_eigenvalues(record, k) -> np.ndarray:
    return sl.eigh(record.hamiltonian_k(k).toarray(), record.overlap_k(k).toarray(), eigvals_only=True)


def assert_same_record(a, b) -> None:
    for name in ("numbers", "positions", "cell", "pbc", "ghost", "pair_i", "pair_j", "pair_shift",
                 "S_pair", "S_onsite", "H_pair", "H_onsite"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.basis.species == b.basis.species


def test_gpaw_record_eigenvalues_match_sisl_at_random_k(gpaw_records):
    _, record = gpaw_records("wse2")
    hamiltonian = record_to_sisl(record)
    assert not hamiltonian.orthogonal
    assert list(hamiltonian.geometry.lattice.nsc) == list(2 * np.abs(record.pair_shift).max(axis=0) + 1)
    for k in np.random.default_rng(7).uniform(-0.5, 0.5, (4, 3)) * [1, 1, 0]:
        np.testing.assert_allclose(hamiltonian.eigh(k), record_eigenvalues(record, k), rtol=0, atol=1e-10)


def test_round_trip_is_exact(gpaw_records):
    _, record = gpaw_records("wse2")
    back = sisl_to_record(record_to_sisl(record), basis_name=record.basis.name)
    assert_same_record(record, back)
    synthetic = random_record(1, n_atoms=5)          # a ghost, three species, periodic in 3D
    assert synthetic.ghost.any()
    assert_same_record(synthetic, sisl_to_record(record_to_sisl(synthetic), basis_name="test"))


def test_tshs_file_holds_the_same_hamiltonian(gpaw_records, tmp_path):
    import sisl

    _, record = gpaw_records("wse2")
    path = write_tshs(record, tmp_path / "wse2.TSHS")
    read = sisl.get_sile(path).read_hamiltonian()
    k = np.array([0.13, -0.31, 0.0])
    np.testing.assert_allclose(read.eigh(k), record_eigenvalues(record, k), rtol=0, atol=1e-8)
    with pytest.raises(MLHError, match="must end in .TSHS"):
        write_tshs(record, tmp_path / "wse2.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wse2.TSHS"]


def test_orthogonal_or_overlap_only_input_is_refused(gpaw_records):
    import dataclasses

    import sisl

    _, record = gpaw_records("wse2")
    orthogonal = sisl.Hamiltonian(record_to_sisl(record).geometry)
    with pytest.raises(MLHError, match="no overlap S"):
        sisl_to_record(orthogonal)
    with pytest.raises(MLHError, match="overlap-only"):
        record_to_sisl(dataclasses.replace(record, H_pair=None, H_onsite=None))
