"""The Hamiltonian record: invariants, Bloch sums, NetCDF round trips, bad input."""

from dataclasses import replace

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from mlh.errors import MLHError
from mlh.record.io import read_record, record_to_dataset, write_record
from tests.synthetic import dense_bloch_reference, random_record


@given(seed=st.integers(0, 10_000), n_atoms=st.integers(1, 5), periodic=st.booleans(),
       n_spins=st.integers(1, 2))
@settings(max_examples=15, deadline=None)
def test_bloch_sum_matches_explicit_loop(seed, n_atoms, periodic, n_spins):
    record = random_record(seed, n_atoms, periodic, n_spins)
    k = np.random.default_rng(seed).uniform(-0.5, 0.5, 3) if periodic else None
    for spin in range(n_spins):
        H = record.hamiltonian_k(k, spin).toarray()
        expected = dense_bloch_reference(record, record.H_pair[spin], record.H_onsite[spin],
                                         np.zeros(3) if k is None else k)
        np.testing.assert_allclose(H, expected, atol=1e-12)
        np.testing.assert_allclose(H, H.conj().T, atol=1e-12)
    if k is None:
        assert record.overlap_k().dtype == np.float64


def test_gamma_matrix_is_sum_over_images():
    record = random_record(1, n_atoms=3, cell_length=3.0)
    gamma = record.hamiltonian_k(None).toarray()
    np.testing.assert_allclose(gamma, record.hamiltonian_k(np.zeros(3)).toarray().real, atol=1e-12)
    assert np.any(record.pair_shift != 0), "fixture should contain periodic images"


@given(seed=st.integers(0, 10_000), n_spins=st.integers(1, 2), periodic=st.booleans())
@settings(max_examples=8, deadline=None)
def test_netcdf_round_trip_is_exact(tmp_path_factory, seed, n_spins, periodic):
    record = random_record(seed, n_atoms=4, periodic=periodic, n_spins=n_spins)
    path = write_record(record, tmp_path_factory.mktemp("rt") / "r.nc")
    back = read_record(path)
    xr.testing.assert_identical(record_to_dataset(back), record_to_dataset(record))
    for name in ["numbers", "positions", "cell", "pbc", "ghost", "pair_i", "pair_j",
                 "pair_shift", "S_pair", "S_onsite", "H_pair", "H_onsite"]:
        np.testing.assert_array_equal(getattr(back, name), getattr(record, name))
    assert back.basis == record.basis
    assert back.provenance == record.provenance
    np.testing.assert_array_equal(back.labels.forces, record.labels.forces)


def test_overlap_only_record_round_trips(tmp_path):
    record = replace(random_record(2), H_pair=None, H_onsite=None)
    back = read_record(write_record(record, tmp_path / "s.nc"))
    assert not back.has_hamiltonian
    with pytest.raises(MLHError, match="overlap-only"):
        back.hamiltonian_k()


def test_baseline_as_hamiltonian_puts_the_baseline_in_place_of_H():
    record = random_record(3)
    with pytest.raises(MLHError, match="no zeroth-step"):
        record.baseline_as_hamiltonian()
    with_baseline = replace(record, H0_pair=0.5 * record.H_pair, H0_onsite=0.5 * record.H_onsite)
    swapped = with_baseline.baseline_as_hamiltonian()
    np.testing.assert_array_equal(swapped.hamiltonian_k(None).toarray(),
                                  with_baseline.baseline_k(None).toarray())
    np.testing.assert_array_equal(swapped.S_pair, record.S_pair)


def test_rejects_second_orientation_of_a_pair():
    record = random_record(3)
    p = int(np.flatnonzero(record.pair_i < record.pair_j)[0])
    pair_i, pair_j = record.pair_i.copy(), record.pair_j.copy()
    pair_i[p], pair_j[p] = record.pair_j[p], record.pair_i[p]
    with pytest.raises(MLHError, match="stored once"):
        replace(record, pair_i=pair_i, pair_j=pair_j)


def test_rejects_nan_and_asymmetric_onsite():
    record = random_record(4)
    bad = record.H_pair.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MLHError, match="NaN"):
        replace(record, H_pair=bad)
    onsite = record.H_onsite.copy()
    onsite[0, 1] += 1.0  # element (0, 1) of the first on-site block only
    with pytest.raises(MLHError, match="not symmetric"):
        replace(record, H_onsite=onsite)


def test_corrupt_and_missing_files_name_the_file(tmp_path):
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"this is not netcdf")
    with pytest.raises(MLHError, match="corrupt.nc: not a readable"):
        read_record(corrupt)
    with pytest.raises(MLHError, match="absent.nc: no such file"):
        read_record(tmp_path / "absent.nc")
    truncated = tmp_path / "truncated.nc"
    data = write_record(random_record(5), tmp_path / "ok.nc").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(MLHError, match="truncated.nc"):
        read_record(truncated)
    ds = record_to_dataset(random_record(6)).drop_vars("S_pair")
    ds.to_netcdf(tmp_path / "nos.nc")
    with pytest.raises(MLHError, match=r"nos.nc: missing variables \['S_pair'\]"):
        read_record(tmp_path / "nos.nc")


def test_write_is_atomic(tmp_path, monkeypatch):
    record = random_record(7)

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", explode)
    with pytest.raises(RuntimeError):
        write_record(record, tmp_path / "r.nc")
    assert list(tmp_path.iterdir()) == []


def test_merged_settings_join_setups_and_refuse_conflicts():
    from mlh.gpaw.settings import merged_settings

    base = {"xc": "PBE", "basis": "szp(dzp)"}
    merged = merged_settings({"a": {**base, "setups": "{W: '6'}"},
                              "b": {**base, "setups": "{W: '6', Nb: '5'}"}})
    assert merged == {**base, "setups": {"W": "6", "Nb": "5"}}
    with pytest.raises(MLHError, match="b: setup 'paw' of W differs"):
        merged_settings({"a": {**base, "setups": "{W: '6'}"}, "b": {**base, "setups": "{W: paw}"}})
    with pytest.raises(MLHError, match="b: basis 'dzp' differs"):
        merged_settings({"a": {**base, "setups": "{}"}, "b": {**base, "basis": "dzp", "setups": "{}"}})
