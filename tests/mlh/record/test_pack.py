"""Packs (H - H0 rounded to a quantum, no S or H0): round trips and bad input, on synthetic
records; the GPAW recomputation of S and H0 is tested in tests/mlh/gpaw/test_unpack.py."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlh.errors import MLHError
from mlh.record.pack import pack_record, read_pack, unpack_record, write_pack
from tests.synthetic import random_record


def with_baseline(seed: int, n_spins: int = 1, periodic: bool = True):
    """A synthetic record with an H0 that differs from H by a random dH of ~0.1 eV."""
    record = random_record(seed, n_spins=n_spins, periodic=periodic)
    rng = np.random.default_rng(seed + 1)
    dH_onsite = rng.normal(0, 0.1, record.H_onsite.shape)
    dH_onsite = 0.5 * (dH_onsite + dH_onsite[:, record._onsite_transpose_index])
    return replace(record, H0_pair=record.H_pair - rng.normal(0, 0.1, record.H_pair.shape),
                   H0_onsite=record.H_onsite - dH_onsite)


@given(seed=st.integers(0, 10_000), n_spins=st.integers(1, 2), periodic=st.booleans(),
       quantum=st.sampled_from([1e-6, 1e-5, 1e-3]))
@settings(max_examples=10, deadline=None)
def test_round_trip_restores_h_within_half_a_quantum(tmp_path_factory, seed, n_spins, periodic, quantum):
    record = with_baseline(seed, n_spins, periodic)
    path = write_pack(pack_record(record, quantum), tmp_path_factory.mktemp("pack") / "r.mlhpack")
    # The record itself serves as the recomputed baseline: its S and H0 are exact.
    back = unpack_record(read_pack(path), replace(record, H_pair=None, H_onsite=None))
    assert np.abs(back.H_pair - record.H_pair).max() <= quantum / 2 + 1e-12
    assert np.abs(back.H_onsite - record.H_onsite).max() <= quantum / 2 + 1e-12
    np.testing.assert_array_equal(back.H0_pair, record.H0_pair)
    np.testing.assert_array_equal(back.S_pair, record.S_pair)
    np.testing.assert_array_equal(back.labels.forces, record.labels.forces)
    np.testing.assert_array_equal(back.labels.eigenvalues, record.labels.eigenvalues)
    assert back.labels.energy == record.labels.energy
    assert back.provenance["seed"] == seed and "rounded to" in back.provenance["unpacked"]


def test_unpacking_picks_the_packed_pairs_out_of_a_longer_pair_list():
    record = with_baseline(3)
    keep = np.arange(record.n_pairs) % 3 != 0
    values = np.repeat(keep, np.diff(record.pair_value_offsets))
    fewer = replace(record, pair_i=record.pair_i[keep], pair_j=record.pair_j[keep],
                    pair_shift=record.pair_shift[keep], S_pair=record.S_pair[values],
                    H_pair=record.H_pair[:, values], H0_pair=record.H0_pair[:, values])
    back = unpack_record(pack_record(fewer), record)
    np.testing.assert_array_equal(back.pair_i, fewer.pair_i)
    np.testing.assert_array_equal(back.S_pair, fewer.S_pair)
    assert np.abs(back.H_pair - fewer.H_pair).max() <= 5e-6 + 1e-12
    with pytest.raises(MLHError, match="has no recomputed H0"):
        unpack_record(pack_record(record), fewer)


def test_bad_records_and_baselines_are_refused():
    record = with_baseline(5)
    with pytest.raises(MLHError, match="both H and H0"):
        pack_record(replace(record, H0_pair=None, H0_onsite=None))
    with pytest.raises(MLHError, match="quantum must be positive"):
        pack_record(record, 0.0)
    with pytest.raises(MLHError, match="too large"):
        pack_record(replace(record, H_pair=record.H_pair + 1e3), quantum=1e-7)
    moved = replace(record, positions=record.positions + 0.01)
    with pytest.raises(MLHError, match="another structure"):
        unpack_record(pack_record(record), moved)


def test_unreadable_packs_name_the_file(tmp_path):
    bad = tmp_path / "bad.mlhpack"
    bad.write_text("not a zip")
    with pytest.raises(MLHError, match="bad.mlhpack: not a readable mlh pack"):
        read_pack(bad)
    with pytest.raises(MLHError, match="missing.mlhpack: no such file"):
        read_pack(tmp_path / "missing.mlhpack")
