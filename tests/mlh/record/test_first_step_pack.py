"""First-step packs (B - H0 rounded to a quantum): round trips through the functions and
`mlh pack-first-step | unpack-first-step`, and bad input, on synthetic records."""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mlh.cli.main import app
from mlh.errors import MLHError
from mlh.record.first_step_pack import (
    first_step_pack,
    read_first_step_pack,
    with_first_step,
    write_first_step_pack,
)
from mlh.record.io import read_record, write_record
from mlh.record.pack import read_pack
from tests.mlh.record.test_pack import with_baseline
from tests.structures import EXAMPLES

FIRST_STEP = {"baseline": "gpaw first SCF step from its initial density, linear mixing share 0.45",
              "baseline_first_step_share": 0.45, "baseline_first_step_kpoint_density": 1.0}


def first_step_of(record, seed: int):
    """The record with a first-step baseline B = H0 + a random step of ~0.1 eV (Hermitian
    on-site blocks) and B's provenance."""
    rng = np.random.default_rng(seed + 2)
    step_onsite = rng.normal(0, 0.1, record.H0_onsite.shape)
    step_onsite = 0.5 * (step_onsite + step_onsite[:, record._onsite_transpose_index])
    return replace(record, H0_pair=record.H0_pair + rng.normal(0, 0.1, record.H0_pair.shape),
                   H0_onsite=record.H0_onsite + step_onsite, provenance={**record.provenance, **FIRST_STEP})


@given(seed=st.integers(0, 10_000), n_spins=st.integers(1, 2), periodic=st.booleans(),
       quantum=st.sampled_from([1e-6, 1e-5, 1e-3]))
@settings(max_examples=10, deadline=None)
def test_round_trip_restores_b_within_half_a_quantum(tmp_path_factory, seed, n_spins, periodic, quantum):
    zeroth = with_baseline(seed, n_spins, periodic)
    first = first_step_of(zeroth, seed)
    path = write_first_step_pack(first_step_pack(first, zeroth, quantum),
                                 tmp_path_factory.mktemp("step") / "r.mlhstep")
    back = with_first_step(zeroth, read_first_step_pack(path))
    assert np.abs(back.H0_pair - first.H0_pair).max() <= quantum / 2 + 1e-12
    assert np.abs(back.H0_onsite - first.H0_onsite).max() <= quantum / 2 + 1e-12
    np.testing.assert_array_equal(back.H_pair, first.H_pair)
    np.testing.assert_array_equal(back.S_pair, first.S_pair)
    assert {key: back.provenance[key] for key in FIRST_STEP} == FIRST_STEP
    assert "rounded to" in back.provenance["unpacked_first_step"]


def test_bad_records_are_refused():
    zeroth = with_baseline(5)
    first = first_step_of(zeroth, 5)
    with pytest.raises(MLHError, match="not a first step"):
        first_step_pack(zeroth, zeroth)
    with pytest.raises(MLHError, match="already a first step"):
        first_step_pack(first, first)
    with pytest.raises(MLHError, match="another structure"):
        first_step_pack(first, replace(zeroth, positions=zeroth.positions + 0.01))
    with pytest.raises(MLHError, match="quantum must be positive"):
        first_step_pack(first, zeroth, 0.0)
    with pytest.raises(MLHError, match="too large"):
        first_step_pack(replace(first, H0_pair=first.H0_pair + 1e3), zeroth, 1e-7)
    pack = first_step_pack(first, zeroth)
    with pytest.raises(MLHError, match="already a first step"):
        with_first_step(first, pack)
    shifted = zeroth.pair_shift.copy()
    shifted[0] += 1
    with pytest.raises(MLHError, match="another pair list"):
        with_first_step(replace(zeroth, pair_shift=shifted), pack)


def test_cli_round_trip_resumes_and_a_missing_h0_record_writes_nothing(tmp_path):
    runner = CliRunner()
    zeroth_dir, first_dir = tmp_path / "h0", tmp_path / "b"
    for seed in (1, 2):
        zeroth = with_baseline(seed)
        write_record(zeroth, zeroth_dir / f"r{seed}.nc")
        write_record(first_step_of(zeroth, seed), first_dir / f"r{seed}.nc")
    steps, back = tmp_path / "steps", tmp_path / "back"
    result = runner.invoke(app, ["pack-first-step", str(first_dir), "--zeroth-step", str(zeroth_dir),
                                 "-o", str(steps)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in steps.iterdir()) == ["r1.mlhstep", "r2.mlhstep"]
    (back / "r1.nc").parent.mkdir()
    write_record(read_record(first_dir / "r1.nc"), back / "r1.nc")
    result = runner.invoke(app, ["unpack-first-step", str(steps), "--zeroth-step", str(zeroth_dir),
                                 "-o", str(back)])
    assert result.exit_code == 0, result.output
    assert "1 records written, 1 skipped" in result.output
    restored = read_record(back / "r2.nc")
    assert np.abs(restored.H0_pair - read_record(first_dir / "r2.nc").H0_pair).max() <= 5e-6 + 1e-12

    (zeroth_dir / "r2.nc").unlink()
    elsewhere = tmp_path / "elsewhere"
    result = runner.invoke(app, ["unpack-first-step", str(steps), "--zeroth-step", str(zeroth_dir),
                                 "-o", str(elsewhere)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {steps / 'r2.mlhstep'}: no H0 record {zeroth_dir / 'r2.nc'} of the same name"]
    assert not elsewhere.exists()


@pytest.mark.parametrize("steps, packs", [("sio2_train_b045", "sio2_train"),
                                          ("sio2_train_more_b045", "sio2_train_more"),
                                          ("sio2_train_extra_b045", "sio2_train_extra")])
def test_committed_first_step_packs_fit_the_committed_packs(steps, packs):
    """Each committed first-step pack applies to the record its namesake pack unpacks to:
    same structure, same pairs, same block sizes, a first-step provenance."""
    data = EXAMPLES / "data"
    step_files = sorted((data / steps).glob("*.mlhstep"))
    assert [f.stem for f in step_files] == sorted(f.stem for f in (data / packs).glob("*.mlhpack"))
    for file in step_files:
        step, packed = read_first_step_pack(file), read_pack(data / packs / f"{file.stem}.mlhpack")
        for name in ("numbers", "pair_i", "pair_j", "pair_shift"):
            np.testing.assert_array_equal(getattr(step, name), getattr(packed, name), err_msg=f"{file}: {name}")
        for name in ("positions", "cell"):  # the unpacked record's, equal to rounding (Å)
            np.testing.assert_allclose(getattr(step, name), getattr(packed, name), rtol=0, atol=1e-8)
        assert step.step_pair.shape == packed.dH_pair.shape and step.step_onsite.shape == packed.dH_onsite.shape
        assert step.provenance["baseline_first_step_share"] == 0.45
