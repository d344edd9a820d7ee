"""Provenance of the drivers' runs (relax.drivers.calculator_attrs): a dft-route run with the
fitted Harris share is identified by the share's file too, so a resumed run notices a refit."""

import argparse
import json
import shutil

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
