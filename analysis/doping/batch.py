"""Resumable batches of independent per-structure tasks on Dask.

Each finished task leaves one JSON row, written atomically, in a state folder; a re-run
skips every task whose row exists, so a killed batch continues where it stopped. A task
that raises (or whose worker dies, e.g. past its memory limit) is reported with its error
and retried by the next run; the others complete. By default the tasks run on a local
cluster of worker processes (one thread each, a memory limit each); given the address of
a running Dask scheduler, they run on its workers (which must see the same files).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlh.errors import MLHError
from mlh.file_output import atomic_output

__all__ = ["BatchOutcome", "run_batch", "dask_client", "task_names"]

SETTINGS_FILE = "settings.json"


@dataclass
class BatchOutcome:
    """Rows of finished tasks (also those of earlier runs) and errors of failed ones, by name."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    skipped: int = 0


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2,
                memory_per_worker: str | None = None) -> Iterator[Any]:
    """A Dask client: of the scheduler at `scheduler`, else of a new local process cluster.

    Args:
        scheduler: address such as tcp://127.0.0.1:8786; None for a local cluster.
        workers: local worker processes (one thread each).
        memory_per_worker: local memory limit per worker such as "6GiB" (Dask restarts a
            worker past 95 % of it and the task fails); None: the machine's memory / workers.
    """
    import dask
    from dask.distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                          "distributed.worker.daemon": False}):
        if scheduler is not None:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError) as err:
                raise MLHError(f"cannot reach the Dask scheduler at {scheduler} ({err})") from None
            with client:
                yield client
            return
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               memory_limit=memory_per_worker or "auto",
                               dashboard_address=None, silence_logs=logging.ERROR)
        with cluster, Client(cluster) as client:
            yield client


def _check_settings(state: Path, settings: Mapping[str, Any]) -> None:
    """Record `settings` in the state folder, or refuse if earlier rows used others."""
    path = state / SETTINGS_FILE
    if path.exists():
        earlier = json.loads(path.read_text())
        if earlier != json.loads(json.dumps(settings)):
            changed = sorted(k for k in set(earlier) | set(settings)
                             if earlier.get(k) != json.loads(json.dumps(settings)).get(k))
            raise MLHError(f"{state} holds results made with other settings ({', '.join(changed)}); "
                           "use a new output folder or delete it")
        return
    state.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=1, sort_keys=True))


def _describe(error: BaseException) -> str:
    if type(error).__name__ == "KilledWorker":
        return "its worker died (memory limit exceeded or crash)"
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return message if isinstance(error, MLHError) else f"{type(error).__name__}: {message}"


def run_batch(
    tasks: Mapping[str, Any],
    function: Callable[[Any], dict[str, Any]],
    state: Path,
    settings: Mapping[str, Any],
    client: Any,
    progress: bool = True,
    on_result: Callable[[str, dict[str, Any] | None, str | None], None] | None = None,
) -> BatchOutcome:
    """Run `function(task)` for every task whose row is not yet in `state`.

    Args:
        tasks: task arguments by unique name (a file-name-safe string).
        function: importable top-level function returning a JSON-serialisable dict.
        state: folder of rows (NAME.json) and the settings they were made with.
        settings: what the rows depend on; a state folder made with other settings is
            refused (MLHError) rather than mixed.
        client: a Dask client (see `dask_client`).
        progress: show a progress bar (on a terminal only).
        on_result: called as on_result(name, row, error) when each task ends.
    """
    from dask.distributed import as_completed
    from tqdm import tqdm

    _check_settings(state, settings)
    outcome = BatchOutcome()
    pending: dict[str, Any] = {}
    for name, task in tasks.items():
        row_path = state / f"{name}.json"
        if row_path.exists():
            outcome.rows[name] = json.loads(row_path.read_text())
            outcome.skipped += 1
        else:
            pending[name] = task
    futures = {client.submit(function, task, key=f"mlh-{name}", pure=False): name
               for name, task in pending.items()}
    with tqdm(total=len(futures), disable=None if progress else True, unit="structure") as bar:
        for future in as_completed(list(futures)):
            name = futures[future]
            try:
                row = future.result()
            except Exception as err:  # any task error is reported, never fatal to the batch
                outcome.failures[name] = _describe(err)
                row = None
            else:
                with atomic_output(state / f"{name}.json") as tmp:
                    tmp.write_text(json.dumps(row))
                outcome.rows[name] = row
            if on_result is not None:
                on_result(name, row, outcome.failures.get(name))
            bar.update()
    return outcome


def task_names(names: Sequence[str]) -> None:
    """Raise MLHError unless `names` are distinct and usable as file names."""
    bad = [n for n in names if not n or "/" in n or n.startswith(".")]
    if bad:
        raise MLHError(f"structure names {bad[:3]} cannot name files")
    if len(set(names)) != len(names):
        raise MLHError("two structures share a name; rename one of the input files")
