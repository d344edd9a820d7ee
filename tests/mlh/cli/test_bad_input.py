"""Bad input to `mlh` ends in one line, exit code 1 and no partial output (issue 19, cases
3-8); the model-digest case is in tests/mlh/model/test_integrity.py, the killed-run case
in tests/mlh/gpaw/test_generate_processes.py, infer's batch policy in test_predictor_cli.py
(it reuses that module's model)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from mlh.cli.main import app
from mlh.record.io import write_record
from tests.structures import EXAMPLES
from tests.synthetic import random_record

runner = CliRunner()
MODEL = EXAMPLES / "models" / "wse2_vacancies"


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder the operating system refuses new files in, also for root (/sys)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    try:
        os.close(tempfile.mkstemp(dir="/sys")[0])
    except OSError:
        return Path("/sys")
    pytest.skip("no folder refuses files to root here")


def _one_error_line(result, expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [f"error: {expected}"]


@pytest.fixture
def existing_file(tmp_path):
    path = tmp_path / "existing.txt"
    path.write_text("keep me")
    return path


def _commands(tmp_path: Path, output: Path) -> dict[str, list[str]]:
    """Every `mlh` command that writes files, with OUTPUT as its output (inputs need not exist:
    outputs are checked first)."""
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"output": str(output)}))
    missing = str(tmp_path / "in.extxyz")
    return {
        "generate": ["generate", missing, "-o", str(output)],
        "infer": ["infer", str(MODEL), missing, "-o", str(output)],
        "partition": ["partition", missing, "-o", str(output), "--count", "2"],
        "import-gears-h": ["import-gears-h", missing, "-o", str(output)],
        "train": ["train", str(config)],
        "recipe": ["recipe", "wse2", "-o", str(output)],
        "template": ["template", "train", "-o", str(output)],
        "analyze": ["analyze", missing, "-o", str(output)],
        "evaluate": ["evaluate", str(MODEL), missing, "-o", str(output)],
        "summarize": ["summarize", missing, "--table", str(output)],
        "pack": ["pack", missing, "-o", str(output)],
        "unpack": ["unpack", missing, "-o", str(output)],
        "pack-first-step": ["pack-first-step", missing, "--zeroth-step", missing, "-o", str(output)],
        "unpack-first-step": ["unpack-first-step", missing, "--zeroth-step", missing, "-o", str(output)],
    }


FOLDER_COMMANDS = ["generate", "infer", "partition", "import-gears-h", "train", "pack", "unpack",
                   "pack-first-step", "unpack-first-step"]
FILE_COMMANDS = ["recipe", "template", "analyze", "evaluate", "summarize"]


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_folder_output_naming_a_file(command, tmp_path, existing_file):
    result = runner.invoke(app, _commands(tmp_path, existing_file)[command])
    option = f"output in {tmp_path / 'train.yaml'}" if command == "train" else "-o"
    _one_error_line(result, f"{existing_file}: is a file, but {option} names a folder to write into")
    assert existing_file.read_text() == "keep me"


@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_file_output_naming_a_folder(command, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = runner.invoke(app, _commands(tmp_path, folder)[command])
    option = "--table" if command == "summarize" else "-o"
    _one_error_line(result, f"{folder}: is a folder, but {option} names a file to write")
    assert not list(folder.iterdir())


@pytest.mark.parametrize("command", FOLDER_COMMANDS + FILE_COMMANDS)
def test_output_in_an_unwritable_folder(command, tmp_path):
    folder = unwritable_folder(tmp_path)
    output = folder / "new" / "out.nc"
    result = runner.invoke(app, _commands(tmp_path, output)[command])
    assert result.exit_code == 1, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {output}: cannot write in {folder} (Permission denied; ")


def test_output_below_a_file(tmp_path, existing_file):
    output = existing_file / "records"
    result = runner.invoke(app, ["generate", str(tmp_path / "x.extxyz"), "-o", str(output)])
    _one_error_line(result, f"{output}: {existing_file} is a file, not a folder (-o)")


def test_impossible_readout_degree_is_refused_before_the_run_folder(tmp_path):
    """Case 4: degree-1 features cannot give the degree-4 blocks of d orbitals; the issue saw
    a 58-line JAX traceback after 25 s and a run folder left behind."""
    data = tmp_path / "records"
    for seed in range(3):
        write_record(random_record(seed), data / f"r{seed}.nc")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "output": "run", "data": {"train_path": ["records"], "valid_path": ["records"]},
        "model": {"atom_centered": {"max_tensordense_degree": 1}},
    }))
    result = runner.invoke(app, ["train", str(config), "--no-progress"])
    _one_error_line(result, "model.atom_centered.max_tensordense_degree is 1, so the on-site readout "
                            "reaches degree 2, but the basis needs degree 4: set it to at least 2")
    assert not (tmp_path / "run").exists()


@pytest.mark.gpaw
def test_generate_refuses_atoms_too_close(tmp_path):
    """Case 5: the issue saw a record written with forces of 83 eV/Å for atoms 0.1 Å apart."""
    path = tmp_path / "close.xyz"
    path.write_text("2\n\nH 0 0 0\nH 0.1 0 0\n")
    out = tmp_path / "records"
    result = runner.invoke(app, ["generate", str(path), "-o", str(out), "--no-progress"])
    _one_error_line(result, f"{path}@0: atoms 0 and 1 are 0.100 Å apart (less than 0.5 Å); "
                            "the structure is unphysical")
    assert not out.exists()
    result = runner.invoke(app, ["generate", str(path), "-o", str(out), "--min-distance", "0.2"])
    assert "(less than 0.2 Å)" in result.stderr and not out.exists()


def test_unknown_element_symbol_is_named(tmp_path):
    """Case 6: was "not a readable structure file (KeyError: 'Qq')"."""
    path = tmp_path / "odd.xyz"
    path.write_text("2\n\nQq 0 0 0\nH 1 0 0\n")
    out = tmp_path / "records"
    result = runner.invoke(app, ["generate", str(path), "-o", str(out)])
    _one_error_line(result, f"{path}: unknown element symbol 'Qq'")
    assert not out.exists()


@pytest.mark.gpaw
def test_element_without_basis_names_the_file(tmp_path):
    path = tmp_path / "francium.xyz"
    path.write_text("2\n\nFr 0 0 0\nH 3 0 0\n")
    result = runner.invoke(app, ["generate", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {path}@0: element Fr: no PAW setup or basis 'szp(dzp)' in gpaw-data")
    assert not (tmp_path / "out").exists()


def test_evaluate_names_record_and_model_for_an_unknown_species(tmp_path):
    """Case 6: was "basis 'szp(dzp)' has no species with Z=8", naming neither."""
    oxide = random_record(1)  # W and O
    record = write_record(dataclasses.replace(oxide, ghost=np.zeros(oxide.n_atoms, bool)),
                          tmp_path / "data" / "oxide.nc")
    result = runner.invoke(app, ["evaluate", str(MODEL), str(record), "-o", str(tmp_path / "m.nc")])
    _one_error_line(result, f"{record}: species O not known to {MODEL} (it knows Se, W)")
    assert not (tmp_path / "m.nc").exists()


def test_help_without_a_terminal_keeps_option_names_whole():
    """Case 8: rich cut them at 80 columns (`--vacancy-spec…`, `--sites-per-la…`)."""
    scripts = Path(sys.executable).parent
    for command, options in ((["mlh-analyze", "doping"], ["--vacancy-species", "--sites-per-lattice-atom",
                                                          "--memory-per-worker"]),
                             (["mlh", "generate"], ["--overlap-only", "--baseline-only", "--min-distance"])):
        text = subprocess.run([str(scripts / command[0]), *command[1:], "--help"], capture_output=True,
                              text=True, check=True, env={**os.environ, "COLUMNS": "80"}).stdout
        assert "…" not in text
        assert all(option in text for option in options)
