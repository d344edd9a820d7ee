"""Training checkpoints: parameters, optimizer state, epoch and metrics history in one file.

Written atomically (temporary file, then rename), so a kill at any moment leaves either
the previous or the new checkpoint. Resuming from the checkpoint of epoch n repeats
exactly what an uninterrupted run does after epoch n (the data order of each epoch is a
function of the seed and the epoch number).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flax import serialization

from mlh.errors import MLHError
from mlh.file_output import atomic_output

__all__ = ["TrainState", "save_checkpoint", "load_checkpoint"]


@dataclass(frozen=True)
class TrainState:
    """What a checkpoint holds: `epoch` epochs are finished."""

    params: Any
    opt_state: Any
    epoch: int
    history: list[dict]


def save_checkpoint(state: TrainState, path: Path) -> None:
    """Write `state` to `path` (msgpack, atomic)."""
    payload = {
        "params": state.params,
        "opt_state": state.opt_state,
        "epoch": state.epoch,
        "history": json.dumps(state.history),
    }
    with atomic_output(path) as tmp:
        tmp.write_bytes(serialization.to_bytes(payload))


def load_checkpoint(path: Path, template: TrainState) -> TrainState:
    """Read a checkpoint into the structure of `template`; MLHError naming the file if corrupt."""
    target = {
        "params": template.params,
        "opt_state": template.opt_state,
        "epoch": 0,
        "history": "[]",
    }
    try:
        payload = serialization.from_bytes(target, Path(path).read_bytes())
        return TrainState(
            params=payload["params"],
            opt_state=payload["opt_state"],
            epoch=int(payload["epoch"]),
            history=json.loads(payload["history"]),
        )
    except Exception as error:  # msgpack and flax raise many types for corrupt bytes
        raise MLHError(f"{path}: corrupt or incompatible checkpoint ({error})") from error
