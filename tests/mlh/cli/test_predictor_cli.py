"""The predictor commands end to end (untrained model, real GPAW records) and their bad-input errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr
from ase.io import write
from typer.testing import CliRunner

from mlh.cli.main import app
from mlh.gpaw.settings import settings_from_provenance
from mlh.model.config import TrainConfig
from mlh.model.predictor import Predictor
from mlh.record.basis import Basis
from mlh.record.io import read_record, write_record
from mlh.train.statistics import analyze_files
from tests.models import TINY_MODEL

runner = CliRunner()


@pytest.fixture(scope="module")
def wse2_model(gpaw_records, tmp_path_factory):
    """An untrained tiny model for the WSe2 primitive-cell record, saved; and the record's path."""
    folder = tmp_path_factory.mktemp("wse2_model")
    atoms, record = gpaw_records("wse2")
    path = write_record(record, folder / "wse2.nc")
    model = TrainConfig.model_validate({"model": TINY_MODEL}).model
    layouts, stats, _ = analyze_files([path], model)
    predictor = Predictor.initialise(model, layouts, stats, seed=1)
    predictor = predictor.with_params(predictor.params, {"gpaw": settings_from_provenance(record.provenance)})
    predictor.save(folder / "model")
    write(folder / "wse2.extxyz", atoms)
    return folder


def test_template_is_valid_config(tmp_path):
    result = runner.invoke(app, ["template", "train", "-o", str(tmp_path / "t.yaml")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "t.yaml").read_text()
    assert "# " in text and "off_diagonal_weight: 4.0" in text
    from mlh.model.config import load_config

    assert load_config(tmp_path / "t.yaml").model == TrainConfig().model


def test_misspelt_config_key_is_named(tmp_path):
    (tmp_path / "bad.yaml").write_text("optimizer:\n  learning_rate: 0.1\n")
    result = runner.invoke(app, ["train", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 1
    assert "bad.yaml" in result.output and "optimizer.learning_rate" in result.output


def test_analyze_writes_statistics(wse2_model, tmp_path):
    result = runner.invoke(app, ["analyze", str(wse2_model / "wse2.nc"), "-o", str(tmp_path / "ss.nc")])
    assert result.exit_code == 0, result.output
    with xr.open_dataset(tmp_path / "ss.nc") as ds:
        assert set(ds["species"].values.tolist()) == {34, 74}


def test_infer_matches_record_pairs_and_overlap(wse2_model, tmp_path):
    out = tmp_path / "predicted"
    result = runner.invoke(
        app, ["infer", str(wse2_model / "model"), str(wse2_model / "wse2.extxyz"), "-o", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    predicted = read_record(out / "wse2-0000.nc")
    reference = read_record(wse2_model / "wse2.nc")
    assert predicted.has_hamiltonian
    assert predicted.labels.n_electrons == reference.labels.n_electrons  # from GPAW's setups
    np.testing.assert_allclose(predicted.S_onsite, reference.S_onsite, atol=1e-10)
    H = predicted.hamiltonian_k(None).toarray()
    np.testing.assert_array_equal(H, H.T)
    # a second run skips the finished structure
    again = runner.invoke(
        app, ["infer", str(wse2_model / "model"), str(wse2_model / "wse2.extxyz"), "-o", str(out), "--no-progress"]
    )
    assert again.exit_code == 0 and "0 records written, 0 failed, 1 skipped" in again.output


def test_evaluate_writes_metrics_and_figure(wse2_model, tmp_path):
    result = runner.invoke(
        app,
        ["evaluate", str(wse2_model / "model"), str(wse2_model / "wse2.nc"), "-o", str(tmp_path / "m.nc"),
         "--plot", str(tmp_path / "m.png")],
    )
    assert result.exit_code == 0, result.output
    with xr.open_dataset(tmp_path / "m.nc") as ds:
        assert float(ds["mae_all"]) > 0
    assert (tmp_path / "m.png").stat().st_size > 1000


def _infer(model, structure, out):
    return runner.invoke(app, ["infer", str(model), str(structure), "-o", str(out), "--no-progress"])


def test_unknown_species_is_reported(wse2_model, gpaw_records, tmp_path):
    atoms, _ = gpaw_records("water")
    write(tmp_path / "water.extxyz", atoms)
    result = _infer(wse2_model / "model", tmp_path / "water.extxyz", tmp_path / "out")
    assert result.exit_code == 1
    assert f"species H, O not known to {wse2_model / 'model'}" in result.output
    assert not list((tmp_path / "out").glob("*.nc"))


def test_close_atoms_are_reported(wse2_model, tmp_path):
    from ase.io import read

    atoms = read(wse2_model / "wse2.extxyz")
    atoms.positions[1] = atoms.positions[0] + [0.3, 0.0, 0.0]
    write(tmp_path / "close.extxyz", atoms)
    result = _infer(wse2_model / "model", tmp_path / "close.extxyz", tmp_path / "out")
    assert result.exit_code == 1
    assert "0.300 Å apart" in result.output
    assert not list((tmp_path / "out").glob("*.nc"))


def test_infer_finishes_good_inputs_and_lists_bad_ones(wse2_model, tmp_path):
    """Batch policy (issue 19, case 7): the good structure is predicted, the unreadable file
    gets one line, exit code 1; no progress-bar updates without a terminal (case 8)."""
    bad = tmp_path / "broken.xyz"
    bad.write_text("3\nnot a comment\nH 0 0\n")
    out = tmp_path / "predicted"
    result = runner.invoke(app, ["infer", str(wse2_model / "model"), str(bad), str(wse2_model / "wse2.extxyz"),
                                 "-o", str(out)])
    assert result.exit_code == 1
    assert [p.name for p in out.glob("*.nc")] == ["wse2-0000.nc"]
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {bad}: not a readable structure file")
    assert f"1 records written, 1 failed, 0 skipped (finished earlier), to {out}" in result.stdout
    assert "\r" not in result.output
    provenance = read_record(out / "wse2-0000.nc").provenance
    assert provenance["model_sha256"] == Predictor.load(wse2_model / "model").digest


def test_different_basis_is_reported(wse2_model, tmp_path):
    record = read_record(wse2_model / "wse2.nc")
    species = tuple(
        dataclasses.replace(s, rcuts=tuple(r + 0.5 for r in s.rcuts)) if s.number == 34 else s
        for s in record.basis.species
    )
    write_record(dataclasses.replace(record, basis=Basis(record.basis.name, species)), tmp_path / "other.nc")
    result = _infer(wse2_model / "model", tmp_path / "other.nc", tmp_path / "out")
    assert result.exit_code == 1
    assert "basis of species 34 differs from the model's" in result.output


def test_corrupt_model_is_reported(wse2_model, tmp_path):
    import shutil

    broken = tmp_path / "model"
    shutil.copytree(wse2_model / "model", broken)
    (broken / "params.msgpack").write_bytes(b"\x00garbage")
    result = _infer(broken, wse2_model / "wse2.extxyz", tmp_path / "out")
    assert result.exit_code == 1
    assert "params.msgpack: content differs from its SHA-256" in result.output
    missing = runner.invoke(app, ["infer", str(tmp_path / "nothing"), str(wse2_model / "wse2.extxyz"), "-o", str(tmp_path)])
    assert missing.exit_code == 1 and "no such model folder" in missing.output
