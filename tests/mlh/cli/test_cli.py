"""The mlh command line, in-process: generate (resume, failures, bad input), recipe, summarize."""

import json

import numpy as np
import pytest
from ase.build import molecule
from ase.io import read, write
from typer.testing import CliRunner

from mlh.cli.main import app
from mlh.record.io import read_record

runner = CliRunner()


@pytest.fixture
def water_file(tmp_path):
    path = tmp_path / "water.extxyz"
    frames = [molecule("H2O", vacuum=3.0), molecule("H2O", vacuum=3.0)]
    frames[1].rattle(0.05, seed=1)
    write(path, frames)
    return path


@pytest.mark.gpaw
def test_generate_writes_records_and_resumes(tmp_path, water_file):
    out = tmp_path / "records"
    result = runner.invoke(app, ["generate", str(water_file), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "2 records written, 0 failed" in result.output
    first = out / "water-0000.nc"
    record = read_record(first)
    assert record.provenance["source"].endswith("water.extxyz@0")
    assert record.provenance["wall_time_seconds"] > 0
    mtime = first.stat().st_mtime_ns
    (out / "water-0001.nc").unlink()  # as if killed before the second finished
    result = runner.invoke(app, ["generate", str(water_file), "-o", str(out), "--no-progress"])
    assert "1 records written" in result.output
    assert first.stat().st_mtime_ns == mtime
    result = runner.invoke(app, ["summarize", str(out), "--plot", str(tmp_path / "d.png"),
                                 "--table", str(tmp_path / "s.nc")])
    assert result.exit_code == 0, result.output
    assert "H2O" in result.output and (tmp_path / "d.png").stat().st_size > 10_000


@pytest.mark.gpaw
def test_generate_baseline_only_writes_s_and_h0_without_scf(tmp_path, water_file):
    out = tmp_path / "baseline"
    result = runner.invoke(app, ["generate", str(water_file), "-o", str(out), "--no-progress",
                                 "--baseline-only", "-j", "1"])
    assert result.exit_code == 0, result.output
    record = read_record(out / "water-0000.nc")
    assert record.has_baseline and not record.has_hamiltonian
    assert record.provenance["task"] == "baseline"
    both = runner.invoke(app, ["generate", str(water_file), "-o", str(tmp_path / "x"),
                               "--baseline-only", "--overlap-only"])
    assert both.exit_code == 1 and "exclude each other" in both.output
    assert not (tmp_path / "x").exists()
    alone = runner.invoke(app, ["generate", str(water_file), "-o", str(tmp_path / "y"),
                                "--first-step-share", "0.45"])
    assert alone.exit_code == 1 and "--first-step-share needs --baseline" in alone.output
    assert not (tmp_path / "y").exists()


@pytest.mark.gpaw
def test_failed_scf_is_listed_and_exit_is_nonzero(tmp_path, water_file):
    config = tmp_path / "bad.yaml"
    config.write_text("maxiter: 2\n")
    out = tmp_path / "records"
    result = runner.invoke(app, ["generate", str(water_file), "-o", str(out),
                                 "--config", str(config), "--no-progress"])
    assert result.exit_code == 1
    assert "0 records written, 2 failed" in result.stdout
    assert len(result.stderr.splitlines()) == 2  # one line per failed structure
    failures = json.loads((out / "failures.json").read_text())
    assert "SCF did not converge" in failures["water-0000"]["error"]
    assert not list(out.glob("*.nc"))


def test_unreadable_structure_file(tmp_path):
    bad = tmp_path / "broken.xyz"
    bad.write_text("3\nnot a comment\nH 0 0\n")
    result = runner.invoke(app, ["generate", str(bad), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert f"error: {bad}: not a readable structure file" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_structure_file(tmp_path):
    result = runner.invoke(app, ["generate", str(tmp_path / "nope.xyz"), "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert "nope.xyz: no such file" in result.output


@pytest.mark.gpaw
def test_element_without_basis(tmp_path):
    path = tmp_path / "francium.xyz"
    write(path, molecule("H2O", vacuum=3.0))
    atoms = read(path)
    atoms.symbols[0] = "Fr"
    write(path, atoms)
    result = runner.invoke(app, ["generate", str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "element Fr: no PAW setup or basis 'szp(dzp)' in gpaw-data" in result.output
    assert not list((tmp_path).glob("out/*.nc"))


def test_bad_config(tmp_path, water_file):
    config = tmp_path / "c.yaml"
    config.write_text("h: -1\nbasis: dzp\n")
    result = runner.invoke(app, ["generate", str(water_file), "-o", str(tmp_path / "o"),
                                 "--config", str(config)])
    assert result.exit_code == 1
    assert "c.yaml: h: Input should be greater than 0.05" in result.output
    config.write_text("hh: 0.2\n")
    result = runner.invoke(app, ["generate", str(water_file), "-o", str(tmp_path / "o"),
                                 "--config", str(config)])
    assert "c.yaml: hh: Extra inputs are not permitted" in result.output


@pytest.mark.parametrize("name, expected", [("wse2", {"W", "Se"}), ("sio2", {"Si", "O"})])
def test_recipes_write_structures(tmp_path, name, expected):
    path = tmp_path / f"{name}.extxyz"
    result = runner.invoke(app, ["recipe", name, "-n", "4", "-o", str(path), "--ghosts"])
    assert result.exit_code == 0, result.output
    frames = read(path, index=":")
    assert len(frames) == 4
    assert set(frames[0].get_chemical_symbols()) == expected
    for atoms in frames:
        assert atoms.get_all_distances(mic=True)[np.triu_indices(len(atoms), 1)].min() > 1.2
    if name == "wse2":
        assert all(len(a) == 36 for a in frames)  # ghosts keep the site
        assert not frames[0].pbc[2]
        a_lengths = [a.cell.lengths()[0] / 3 for a in frames]
        assert all(3.32 * 0.98 <= x <= 3.32 * 1.02 for x in a_lengths)


def test_sio2_recipe_rattle_and_vacancy_relaxation(tmp_path):
    """--rattle draws each cell's amplitude; --vacancy-relaxation pulls the vacancy's two Si
    neighbours together (shorter Si-Si distance than in the unrelaxed cell, same seed)."""
    from mlh.gpaw.structures import quartz_with_vacancy

    plain = quartz_with_vacancy(np.random.default_rng(3), vacancy_probability=1.0, rattle=0.0)
    pulled = quartz_with_vacancy(np.random.default_rng(3), vacancy_probability=1.0, rattle=0.0,
                                 vacancy_relaxation=0.4)
    moved = np.flatnonzero(np.linalg.norm(plain.positions - pulled.positions, axis=1) > 1e-9)
    assert len(moved) == 2 and set(pulled.numbers[moved]) == {14}
    assert pulled.get_distance(*moved, mic=True) < plain.get_distance(*moved, mic=True) - 0.05
    assert plain.get_distance(*moved, mic=True) < 3.2  # the pair bridged by the removed O
    path = tmp_path / "q.extxyz"
    result = runner.invoke(app, ["recipe", "sio2", "-n", "3", "-o", str(path), "--rattle",
                                 "0.1:0.2", "--vacancy-relaxation", "0.3"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["recipe", "wse2", "-o", str(path), "--vacancy-relaxation", "0.3"])
    assert result.exit_code == 1 and "sio2 recipe only" in result.output
    result = runner.invoke(app, ["recipe", "sio2", "-o", str(path), "--rattle", "0.2"])
    assert result.exit_code == 1 and "--rattle '0.2' is not of the form LOW:HIGH" in result.output


def test_sio2_recipe_vacancy_probability(tmp_path):
    """--vacancy-probability 1 gives only vacancy cells (35 of 36 atoms), 0 only hosts."""
    from ase.io import read

    for probability, atoms in (("1", 35), ("0", 36)):
        path = tmp_path / f"q{probability}.extxyz"
        result = runner.invoke(app, ["recipe", "sio2", "-n", "4", "--repeat", "2x2x1", "-o",
                                     str(path), "--vacancy-probability", probability])
        assert result.exit_code == 0, result.output
        assert [len(a) for a in read(path, ":")] == [atoms] * 4
    result = runner.invoke(app, ["recipe", "wse2", "-o", str(path), "--vacancy-probability", "1"])
    assert result.exit_code == 1 and "sio2 recipe only" in result.output


def test_unknown_recipe(tmp_path):
    result = runner.invoke(app, ["recipe", "graphene", "-o", str(tmp_path / "g.xyz")])
    assert result.exit_code == 1
    assert "unknown recipe 'graphene'" in result.output
