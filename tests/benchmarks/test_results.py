"""The benchmark scripts' results files: resumed with the same settings, never overwritten
with others."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from mlh.model.config import load_config  # noqa: E402

from _results import config_digest, load_previous, write_results  # noqa: E402

CONFIG = Path(__file__).parents[2] / "examples" / "sio2_correction_model.yaml"


def test_config_digest_ignores_comments_and_run_fields(tmp_path):
    base = load_config(CONFIG)
    commented = tmp_path / "commented.yaml"
    commented.write_text("# a comment that changes the bytes\n" + CONFIG.read_text())
    run = base.model_copy(update={"n_epochs": 3, "output": tmp_path / "run",
                                  "data": base.data.model_copy(update={"train_path": [tmp_path]})})
    other_split = base.model_copy(update={"data": base.data.model_copy(update={"split_seed": 99})})
    assert config_digest(load_config(commented)) == config_digest(base) == config_digest(run)
    assert config_digest(other_split) != config_digest(base)


def test_load_previous_resumes_or_refuses(tmp_path):
    path = tmp_path / "results.json"
    assert load_previous(path, {"epochs": 40}) == {}
    write_results({"settings": {"epochs": 40}, "runs": {"base": {"H_mae": 1.0}}}, path)
    assert load_previous(path, {"epochs": 40}) == {"base": {"H_mae": 1.0}}
    before = path.read_text()
    with pytest.raises(SystemExit, match=r"results\.json.*epochs"):
        load_previous(path, {"epochs": 60})
    assert path.read_text() == before
