"""`mlh-analyze pdos | hole | bands | compare | density` end to end on a real GPAW record, and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from analysis.cli import app
from mlh.record.io import write_record

runner = CliRunner()


@pytest.fixture(scope="module")
def wse2_file(gpaw_records, tmp_path_factory):
    """The primitive WSe2 GPAW record (SCF k-grid 3x3x1) as a file."""
    _, record = gpaw_records("wse2")
    return write_record(record, tmp_path_factory.mktemp("analysis") / "wse2.nc")


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_failed_cleanly(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    message = result.stderr.strip().splitlines()  # stdout may hold a batch's summary line
    assert len(message) == 1 and message[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in message[0], message[0]


def test_pdos_writes_dataset_and_figure(wse2_file, tmp_path):
    result = run("pdos", wse2_file, "-o", tmp_path, "--kpts", "3x3x1", "--points", "2000")
    assert result.exit_code == 0, result.output
    with xr.open_dataset(tmp_path / "wse2.pdos.nc") as ds:
        assert ds.sizes["energy"] == 2000
        assert set(ds["species"].values.tolist()) == {"W", "Se"}
        assert np.all(ds["dos"].values >= 0)
        # the species PDOS add up to the total DOS (Mulliken weights sum to 1)
        np.testing.assert_allclose(ds["pdos_species"].sum("species"), ds["dos"], atol=1e-8)
    assert (tmp_path / "wse2.pdos.png").stat().st_size > 10_000


def test_density_writes_netcdf_and_cube_with_the_electron_count(wse2_file, tmp_path):
    result = run("density", wse2_file, "-o", tmp_path / "n.nc", "--cube", tmp_path / "n.cube")
    assert result.exit_code == 0, result.output
    with xr.open_dataset(tmp_path / "n.nc") as ds:
        assert ds["density"].attrs["units"] == "electron/angstrom^3"
        assert float(ds["density"].min()) > -1e-10
    assert (tmp_path / "n.cube").stat().st_size > 1000
    missing = run("density", tmp_path / "absent.nc", "-o", tmp_path / "m.nc")
    assert_failed_cleanly(missing, "absent.nc")
    assert not (tmp_path / "m.nc").exists()


def test_hole_concentration_rises_with_removed_electrons(wse2_file, tmp_path):
    out = tmp_path / "holes.nc"
    result = run("hole", wse2_file, wse2_file, "-o", out, "--kpts", "3x3x1", "--charge", "0.05")
    assert result.exit_code == 0, result.output
    neutral = run("hole", wse2_file, "-o", tmp_path / "neutral.nc", "--kpts", "3x3x1")
    assert neutral.exit_code == 0, neutral.output
    with xr.open_dataset(out) as charged, xr.open_dataset(tmp_path / "neutral.nc") as ds:
        assert charged.sizes["structure"] == 2
        assert float(charged["holes_per_cell"][0]) > 10 * float(ds["holes_per_cell"][0]) + 1e-3
        assert np.isfinite(charged["holes_per_area"]).all()


def test_bands_follow_the_record_fermi_level(wse2_file, tmp_path):
    out = tmp_path / "bands.nc"
    result = run("bands", wse2_file, "-o", out, "--path", "GMKG", "--npoints", "30",
                 "--plot", tmp_path / "bands.png")
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out) as ds:
        assert ds.sizes["kpoint"] == 30
    assert (tmp_path / "bands.png").stat().st_size > 10_000


def test_compare_reports_a_known_onsite_shift(gpaw_records, tmp_path):
    _, record = gpaw_records("wse2")
    shifted = dataclasses.replace(record, H_onsite=record.H_onsite + 0.001)
    write_record(record, tmp_path / "reference" / "cell.nc")
    write_record(shifted, tmp_path / "predicted" / "cell.nc")
    out = tmp_path / "compare.nc"
    result = run("compare", tmp_path / "predicted", tmp_path / "reference", "-o", out,
                 "--plot", tmp_path / "compare.png")
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out) as ds:
        assert float(ds["mae_onsite"]) == pytest.approx(0.001, rel=1e-6)
        assert float(ds["mae_offsite"]) == 0.0


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["hole", "{wse2}", "--species", "W,Xx"], ["Xx"]),
        (["hole", "{wse2}", "--window", "0.2,0"], ["--window", "empty"]),
        (["pdos", "{wse2}", "--energies", "1,1"], ["--energies"]),
        (["hole", "{missing}"], ["missing.nc"]),
        (["hole", "{garbage}"], ["garbage.nc"]),
        (["pdos", "{no_overlap}"], ["no_overlap.nc", "S_pair"]),
        (["hole", "{wse2}", "--route", "sparse", "--kpts", "3x3x1"], ["Γ only"]),
        (["pdos", "{wse2}", "--kpts", "3x3"], ["--kpts '3x3' is not a grid like 2x2x1"]),
    ],
)
def test_bad_input_gives_one_message_and_no_output(wse2_file, tmp_path, args, fragments):
    garbage = tmp_path / "garbage.nc"
    garbage.write_text("not a record")
    with xr.open_dataset(wse2_file) as ds:
        ds.load().drop_vars(["S_pair", "S_onsite"]).to_netcdf(tmp_path / "no_overlap.nc")
    paths = {"wse2": wse2_file, "missing": tmp_path / "missing.nc", "garbage": garbage,
             "no_overlap": tmp_path / "no_overlap.nc"}
    out = tmp_path / "out.nc"
    result = run(*[a.format(**paths) for a in args], "-o", out)
    assert_failed_cleanly(result, *fragments)
    assert not out.exists()


def test_compare_refuses_different_structures(gpaw_records, tmp_path):
    _, wse2 = gpaw_records("wse2")
    _, water = gpaw_records("water")
    write_record(wse2, tmp_path / "reference" / "cell.nc")
    write_record(water, tmp_path / "predicted" / "cell.nc")
    out = tmp_path / "compare.nc"
    result = run("compare", tmp_path / "predicted", tmp_path / "reference", "-o", out)
    assert_failed_cleanly(result, "different atoms")
    assert not out.exists()
