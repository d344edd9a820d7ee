"""Committees (mlh.model.ensemble): written and read back with their members' digests, they
predict the mean of their members, refuse members that differ, a changed member and
training, and the dft route's forces of a committee are minus the gradient of its energy."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from mlh.cli.main import app
from mlh.errors import MLHError
from mlh.inference.prediction import predict_record
from mlh.model.ensemble import write_ensemble
from mlh.model.predictor import ENSEMBLE_FILE, EnsemblePredictor, Predictor
from tests.structures import EXAMPLES, WSE2_CORRECTION_MODEL, wse2_primitive

runner = CliRunner()


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """The bundled WSe2 correction model and a copy with every parameter scaled by a random
    factor within +-5 % (another member of the same architecture), as saved folders."""
    folder = tmp_path_factory.mktemp("members")
    first = Predictor.load(WSE2_CORRECTION_MODEL)
    rng = np.random.default_rng(7)
    params = jax.tree_util.tree_map(
        lambda x: (np.asarray(x) * (1 + 0.05 * rng.uniform(-1, 1, np.shape(x)))).astype(np.float32),
        first.params)
    first.with_params(params).save(folder / "second")
    return [WSE2_CORRECTION_MODEL, folder / "second"]


@pytest.fixture(scope="module")
def committee(members, tmp_path_factory):
    folder = tmp_path_factory.mktemp("committee") / "committee"
    write_ensemble(folder, members)
    return folder


@pytest.mark.gpaw
def test_committee_predicts_the_mean_of_its_members(committee, members):
    record = wse2_primitive(rattle=0.05, seed=3)
    loaded = Predictor.load(committee)
    assert isinstance(loaded, EnsemblePredictor) and len(loaded.members) == 2
    singles = [predict_record(Predictor.load(path), record) for path in members]
    mean = predict_record(loaded, record)

    assert mean.provenance["model_sha256"] == loaded.digest
    np.testing.assert_allclose(mean.H_onsite, (singles[0].H_onsite + singles[1].H_onsite) / 2,
                               atol=2e-6)
    both = [s for s in singles if s.H_pair.shape == mean.H_pair.shape]
    if len(both) == 2:  # the same pairs survive the negligible-block filter
        np.testing.assert_allclose(mean.H_pair, (both[0].H_pair + both[1].H_pair) / 2, atol=2e-6)
    assert np.abs(singles[0].H_onsite - singles[1].H_onsite).max() > 1e-3  # members differ


def test_cli_writes_a_committee_and_refuses_members_that_differ(members, tmp_path):
    result = runner.invoke(app, ["ensemble", "-o", str(tmp_path / "c"), *map(str, members)])
    assert result.exit_code == 0, result.output
    assert "committee of 2 models" in result.output
    assert json.loads((tmp_path / "c" / ENSEMBLE_FILE).read_text())["members"][1]["folder"] == "members/1"

    other = EXAMPLES / "models" / "wse2_nb_vacancies_correction"
    result = runner.invoke(app, ["ensemble", "-o", str(tmp_path / "bad"), str(members[0]), str(other)])
    assert result.exit_code == 1
    assert f"member {other} differs" in result.output and "species" in result.output
    assert not (tmp_path / "bad").exists()

    result = runner.invoke(app, ["ensemble", "-o", str(tmp_path / "one"), str(members[0])])
    assert result.exit_code == 1 and "at least two members" in result.output


def test_changed_member_or_description_is_refused(committee, tmp_path):
    import shutil

    copy = shutil.copytree(committee, tmp_path / "copy")
    description = json.loads((copy / ENSEMBLE_FILE).read_text())
    description["members"][1]["digest"] = "0" * 64
    (copy / ENSEMBLE_FILE).write_text(json.dumps(description))
    with pytest.raises(MLHError, match="members/1: its model digest differs"):
        Predictor.load(copy)

    (copy / ENSEMBLE_FILE).write_text("{not json")
    with pytest.raises(MLHError, match=f"{ENSEMBLE_FILE}: missing or corrupt committee description"):
        Predictor.load(copy)


def test_committee_is_not_trained_or_sealed(committee):
    loaded = Predictor.load(committee)
    result = runner.invoke(app, ["seal", str(committee)])
    assert result.exit_code == 1 and "a committee is identified by its members' digests" in result.output
    with pytest.raises(MLHError, match="not trained"):
        loaded.with_params(loaded.params)
    with pytest.raises(MLHError, match="written by write_ensemble"):
        loaded.save(committee.parent / "again")


@pytest.mark.gpaw
@pytest.mark.usefixtures("float64")
def test_committee_dft_forces_are_minus_the_gradient(committee):
    """The dft route differentiates the committee's mean H (both members' parameters) and
    GPAW's H0: central differences (h = 0.0025 Å) within the issue's 1e-3 eV/Å."""
    from relax.calculator import MLHCalculator
    from tests.physics.dft.test_forces import central_difference

    calculator = MLHCalculator(committee, route="dft", kpts=(2, 2, 1), skin=1.0, functional="mean")
    atoms = wse2_primitive(rattle=0.08, seed=5)
    forces = calculator.get_forces(atoms)

    assert forces[1, 2] == pytest.approx(central_difference(calculator, atoms, 1, 2, 0.0025),
                                         abs=1e-3)
