"""Model digests (issue 19, case 1): written on save, checked at load, carried by predictions."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
from typer.testing import CliRunner

from mlh.cli.main import app
from mlh.errors import MLHError
from mlh.model.integrity import CHECKSUM_FILE, folder_digest, verify_checksums
from mlh.model.predictor import Predictor
from tests.structures import EXAMPLES

runner = CliRunner()


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """The bundled WSe2 model saved again through the normal save path (no compilation)."""
    folder = tmp_path_factory.mktemp("integrity") / "model"
    digest = Predictor.load(EXAMPLES / "models" / "wse2_vacancies").save(folder)
    return folder, digest


def _copy(folder, tmp_path):
    return shutil.copytree(folder, tmp_path / "model")


def test_save_writes_the_digest_that_load_checks(saved_model):
    folder, digest = saved_model
    stored = json.loads((folder / CHECKSUM_FILE).read_text())
    assert stored["digest"] == digest == folder_digest(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = Predictor.load(folder)
    assert loaded.digest == digest
    assert loaded.provenance == {"model": str(folder), "model_sha256": digest}
    assert loaded.with_params(loaded.params).digest is None  # new parameters are not the saved model


def test_same_size_change_in_parameters_is_refused_in_one_line(saved_model, tmp_path):
    """16 bytes overwritten mid-file keep params.msgpack readable (the issue saw 1e12 eV
    Hamiltonians); the digest refuses the model before anything is written."""
    folder = _copy(saved_model[0], tmp_path)
    params = folder / "params.msgpack"
    data = bytearray(params.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(16)
    params.write_bytes(bytes(data))
    with pytest.raises(MLHError, match="params.msgpack: content differs from its SHA-256"):
        Predictor.load(folder)
    structure = tmp_path / "any.extxyz"
    structure.write_text("1\n\nH 0 0 0\n")
    out = tmp_path / "predicted"
    result = runner.invoke(app, ["infer", str(folder), str(structure), "-o", str(out), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {params}: content differs from its SHA-256 in {folder / CHECKSUM_FILE} "
        "(corrupt or changed model file); restore the model folder or retrain"]
    assert not out.exists()


def test_changed_description_or_statistics_are_refused(saved_model, tmp_path):
    folder = _copy(saved_model[0], tmp_path)
    description = folder / "model.json"
    text = description.read_text()
    assert '"cutoff": 8.0' in text
    description.write_text(text.replace('"cutoff": 8.0', '"cutoff": 8.5', 1))
    with pytest.raises(MLHError, match="model.json: content differs"):
        Predictor.load(folder)


def test_model_without_digest_warns_and_seal_adds_one(saved_model, tmp_path):
    """Older models (no checksums.json) load with one warning line naming `mlh seal`."""
    folder = _copy(saved_model[0], tmp_path)
    (folder / CHECKSUM_FILE).unlink()
    assert folder_digest(folder) == saved_model[1]  # still identifies the content in provenance
    water = tmp_path / "water.extxyz"
    water.write_text("1\n\nO 0 0 0\n")
    out = tmp_path / "predicted"
    result = runner.invoke(app, ["infer", str(folder), str(water), "-o", str(out), "--no-progress"])
    assert result.exit_code == 1
    warning, error = result.stderr.splitlines()
    assert warning == (f"warning: {folder}: no checksums.json, so the model files cannot be checked for "
                       f"corruption (a model saved before digests); `mlh seal {folder}` writes one")
    assert error == f"error: {water}@0: species O not known to {folder} (it knows Se, W)"
    assert not out.exists()
    result = runner.invoke(app, ["seal", str(folder)])
    assert result.exit_code == 0, result.output
    assert verify_checksums(folder) == saved_model[1]
    again = runner.invoke(app, ["seal", str(folder)])
    assert again.exit_code == 1 and "already has checksums" in again.stderr


BUNDLED_MODELS = sorted(path.parent.name for path in (EXAMPLES / "models").glob(f"*/{CHECKSUM_FILE}"))
"""Every bundled model folder that holds checksums."""


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_bundled_models_carry_their_digest(name):
    folder = EXAMPLES / "models" / name
    assert verify_checksums(folder) == json.loads((folder / CHECKSUM_FILE).read_text())["digest"]
