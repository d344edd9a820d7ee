"""Results of the benchmark scripts: JSON files written atomically (imported by the scripts,
whose folder is on sys.path when they run)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mlh.file_output import atomic_output
from mlh.model.config import TrainConfig

RUN_FIELDS = {"output": True, "n_epochs": True,
              "data": {"train_path", "valid_path", "extra_train_path", "n_train"}}
"""TrainConfig fields each benchmark run sets itself (not part of the settings digest)."""


def write_results(result: Any, path: Path) -> str:
    """Write `result` as indented JSON to `path` (folders made, temporary file renamed into
    place) and return the text."""
    text = json.dumps(result, indent=1)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(text + "\n")
    return text


def training_history(run: Path) -> list[dict[str, str]]:
    """The rows of a training run's RUN/metrics.csv, one dict per epoch (values as text)."""
    lines = (run / "metrics.csv").read_text().splitlines()
    return [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]


def config_digest(config: TrainConfig) -> str:
    """A short digest of the loaded configuration without the fields each run sets itself:
    comments, formatting and those fields do not change it."""
    text = config.model_dump_json(exclude=RUN_FIELDS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_previous(path: Path, settings: dict) -> dict:
    """The finished runs of an earlier results file at `path` ({} if there is none). Exits
    with a message if that file was made with other settings, so it is never overwritten."""
    if not path.exists():
        return {}
    old = json.loads(path.read_text())
    if old.get("settings") != settings:
        changed = sorted(k for k in set(settings) | set(old.get("settings", {}))
                         if settings.get(k) != old.get("settings", {}).get(k))
        raise SystemExit(f"{path}: results made with other settings ({', '.join(changed)}); "
                         "give another --out (or remove the file) to start afresh")
    return old.get("runs", {})
