"""benchmarks/correction_ab.py's runs: which records and which name each run gets."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from mlh.model.config import load_config  # noqa: E402

from correction_ab import _run_config, run_name  # noqa: E402

CONFIG = Path(__file__).parents[2] / "examples" / "sio2_first_step_model.yaml"


def test_runs_keep_the_first_extra_folders(tmp_path):
    base = load_config(CONFIG)
    extra = base.data.extra_train_path
    assert len(extra) == 2
    kept = {k: _run_config(base, tmp_path, tmp_path / "runs", "correction", 19, 80, k) for k in (0, 1, None)}
    assert kept[0].data.extra_train_path == []
    assert kept[1].data.extra_train_path == extra[:1]
    assert kept[None].data.extra_train_path == extra
    assert kept[1].data.train_path == [tmp_path] and kept[1].data.n_train == 19
    assert kept[1].model.target == "correction" and kept[1].n_epochs == 80
    assert kept[1].output == tmp_path / "runs" / "correction_n19_x1_e80"
    assert run_name("direct", 8, None) == "direct_n8"  # the names of results made before the option
