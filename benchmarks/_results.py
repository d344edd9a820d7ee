"""Results of the benchmark scripts: JSON files written atomically (imported by the scripts,
whose folder is on sys.path when they run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlh.file_output import atomic_output


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
