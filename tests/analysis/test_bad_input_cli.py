"""Bad input to `mlh-analyze` (issue 19): output paths checked before any work (case 3),
messages that name the right thing (case 6), one batch policy (case 7)."""

from __future__ import annotations

import pytest
import xarray as xr
from typer.testing import CliRunner

from analysis.cli import app
from mlh.record.io import write_record
from tests.mlh.cli.test_bad_input import unwritable_folder
from tests.structures import EXAMPLES
from tests.synthetic import random_record

runner = CliRunner()


def _commands(tmp_path, output) -> dict[str, list[str]]:
    """Every `mlh-analyze` command that writes files, with OUTPUT as its output (inputs need
    not exist: outputs are checked first)."""
    record = str(tmp_path / "missing.nc")
    return {
        "pdos": ["pdos", record, "-o", str(output)],
        "doping": ["doping", str(tmp_path / "s.extxyz"), "-o", str(output),
                   "--model", str(EXAMPLES / "models" / "wse2_nb_vacancies")],
        "hole": ["hole", record, "-o", str(output)],
        "bands": ["bands", record, "-o", str(output)],
        "compare": ["compare", record, record, "-o", str(output)],
        "density": ["density", record, "-o", str(output)],
    }


FOLDER_COMMANDS = ["pdos", "doping"]
FILE_COMMANDS = ["hole", "bands", "compare", "density"]


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_folder_output_naming_a_file(command, tmp_path):
    existing = tmp_path / "existing.nc"
    existing.write_text("keep me")
    result = runner.invoke(app, _commands(tmp_path, existing)[command])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {existing}: is a file, but -o names a folder to write into"]
    assert existing.read_text() == "keep me"


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_file_output_naming_a_folder(command, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = runner.invoke(app, _commands(tmp_path, folder)[command])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {folder}: is a folder, but -o names a file to write"]
    assert not list(folder.iterdir())


@pytest.mark.parametrize("command", FOLDER_COMMANDS + FILE_COMMANDS)
def test_output_in_an_unwritable_folder(command, tmp_path):
    folder = unwritable_folder(tmp_path)
    output = folder / "out.nc"
    result = runner.invoke(app, _commands(tmp_path, output)[command])
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {output}: cannot write in {folder} (Permission denied; -o)")


def test_unknown_species_option_is_named_before_any_record_is_read(tmp_path):
    """Case 6: `--species Xx` was reported against the record file."""
    output = tmp_path / "holes.nc"
    result = runner.invoke(app, ["hole", str(tmp_path / "missing.nc"), "-o", str(output), "--species", "W,Xx"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["error: --species 'W,Xx': unknown element symbol 'Xx'"]
    assert not output.exists()


def test_compare_pairs_two_files_whatever_their_names(tmp_path):
    """Case 6: two files were matched by file name and refused."""
    record = random_record(2)
    predicted = write_record(record, tmp_path / "predicted.nc")
    reference = write_record(record, tmp_path / "reference.nc")
    output = tmp_path / "compare.nc"
    result = runner.invoke(app, ["compare", str(predicted), str(reference), "-o", str(output)])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(output) as metrics:
        assert float(metrics["mae_all"]) == 0.0


@pytest.fixture
def good_and_bad(tmp_path):
    """A readable record (W and H) and a file that is not a record, in one folder."""
    folder = tmp_path / "records"
    good = write_record(random_record(2), folder / "good.nc")
    bad = folder / "bad.nc"
    bad.write_bytes(b"not NetCDF")
    return folder, good, bad


def test_pdos_finishes_good_records_and_lists_bad_ones(tmp_path, good_and_bad):
    """Case 7: pdos stopped at the first bad record."""
    folder, good, bad = good_and_bad
    output = tmp_path / "pdos"
    result = runner.invoke(app, ["pdos", str(folder), "-o", str(output), "--no-plot", "--points", "200"])
    assert result.exit_code == 1
    assert sorted(p.name for p in output.iterdir()) == ["good.pdos.nc"]
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {bad}: not a readable NetCDF record")
    assert f"1 PDOS written to {output}, 1 failed" in result.stdout


def test_hole_writes_the_good_rows_and_lists_bad_ones(tmp_path, good_and_bad):
    """Case 7: hole wrote nothing when one record was bad."""
    folder, good, bad = good_and_bad
    output = tmp_path / "holes.nc"
    result = runner.invoke(app, ["hole", str(folder), "-o", str(output), "--species", "W,H"])
    assert result.exit_code == 1
    with xr.open_dataset(output) as table:
        assert table["structure"].values.tolist() == [str(good)]
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {bad}: not a readable NetCDF record")
