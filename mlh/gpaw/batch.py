"""Parallel, resumable batches of GPAW jobs that each write one record.

The worker processes die with the main process (Linux parent-death signal) and run
GPAW with one BLAS thread each; a job's failure is a `JobResult` with an error, never an
exception, so the others go on. DIR/failures.json lists the failures of the latest run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TypeVar

from mlh.file_output import atomic_output

__all__ = ["JobResult", "run_batch", "write_failures"]

JobT = TypeVar("JobT")


@dataclass(frozen=True)
class JobResult:
    """How one job ended: its name, input, wall time (s) and error message (None if fine)."""

    name: str
    source: str
    seconds: float
    error: str | None = None


def _die_with_parent(parent: int) -> None:
    """Worker initializer: ask Linux to kill this process when the main process dies (a
    killed run must not leave GPAW workers writing records); elsewhere a no-op."""
    import ctypes
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the main process died before the signal was armed
        os._exit(1)


def run_batch(
    todo: Sequence[JobT],
    worker: Callable[[JobT], JobResult],
    jobs: int,
    progress: bool,
    description: str,
    finished_before: int = 0,
) -> list[JobResult]:
    """Run `worker` (a picklable module-level function) on every job, `jobs` at a time in
    spawned processes; results in order of completion. `finished_before` only sets where
    the progress bar starts."""
    from tqdm import tqdm

    results: list[JobResult] = []
    bar = tqdm(total=len(todo) + finished_before, initial=finished_before,
               disable=None if progress else True, desc=description, unit="structure")
    # GPAW's grid code is single-threaded; one BLAS thread per worker keeps cores for workers.
    env_backup = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if jobs > 1:
        os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"),
                                 initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
            for future in as_completed([pool.submit(worker, job) for job in todo]):
                results.append(future.result())
                bar.update()
    finally:
        bar.close()
        for key, value in env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return results


def write_failures(output_dir: Path, results: Sequence[JobResult]) -> None:
    """Keep DIR/failures.json listing the jobs that failed in the latest run."""
    failures = {r.name: {"source": r.source, "error": r.error} for r in results if r.error}
    path = output_dir / "failures.json"
    if failures:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(failures, indent=2))
    else:
        path.unlink(missing_ok=True)
