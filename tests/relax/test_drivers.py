"""Provenance of the drivers' runs (relax.drivers.calculator_attrs): a dft-route run with the
fitted Harris share is identified by the share's file too, so a resumed run notices a refit,
and a committee by its members' digests."""

import argparse
import json
import shutil

from mlh.model.ensemble import write_ensemble
from mlh.model.predictor import Predictor
from relax.drivers import calculator_attrs
from tests.structures import WSE2_MODEL


def attrs(model, functional: str) -> dict:
    return calculator_attrs(argparse.Namespace(model=model, route="dft", kpts=None, width=0.01,
                                               functional=functional, repulsion=None))


def test_fitted_share_file_enters_the_model_digest(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(WSE2_MODEL, model)
    (model / "harris_share.json").write_text(json.dumps({"harris_share": 0.3}))
    fitted, kohn_sham = attrs(model, "fitted"), attrs(model, "kohn-sham")
    assert fitted["functional"] == "fitted"
    (model / "harris_share.json").write_text(json.dumps({"harris_share": 0.4}))
    assert attrs(model, "fitted")["model_sha256"] != fitted["model_sha256"]
    assert attrs(model, "kohn-sham")["model_sha256"] == kohn_sham["model_sha256"]


def test_committee_members_enter_the_model_digest(tmp_path):
    """A committee folder has no model files of its own: its ensemble.json (the members'
    digests) identifies it, so another member makes another digest."""
    model = Predictor.load(WSE2_MODEL)
    model.with_params(model.params, {**model.metadata, "note": "another member"}).save(tmp_path / "other")
    write_ensemble(tmp_path / "a", [WSE2_MODEL, WSE2_MODEL])
    write_ensemble(tmp_path / "b", [WSE2_MODEL, tmp_path / "other"])
    digests = {attrs(tmp_path / name, "kohn-sham")["model_sha256"] for name in ("a", "b", "empty")}
    assert len(digests) == 3
