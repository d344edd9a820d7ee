"""The train/validation split of the data configuration (`mlh.train.loop.split_files`)."""

from __future__ import annotations

from pathlib import Path

from mlh.model.config import DataConfig
from mlh.train.loop import split_files


def _files(folder: Path, stem: str, n: int) -> list[Path]:
    folder.mkdir()
    paths = [folder / f"{stem}-{i:04d}.nc" for i in range(n)]
    for path in paths:
        path.touch()
    return paths


def test_extra_training_records_leave_the_validation_split_unchanged(tmp_path):
    base = _files(tmp_path / "base", "cell", 10)
    extra = _files(tmp_path / "extra", "snapshot", 4)
    plain = DataConfig(train_path=[tmp_path / "base"], valid_fraction=0.2, split_seed=3)
    train, valid = split_files(plain)
    train_more, valid_more = split_files(plain.model_copy(update={"extra_train_path": [tmp_path / "extra"]}))
    assert valid_more == valid and len(valid) == 2
    assert train_more == train + extra
    assert sorted(train + valid) == base
    limited, _ = split_files(plain.model_copy(update={"n_train": 3, "extra_train_path": [tmp_path / "extra"]}))
    assert limited == train[:3] + extra
