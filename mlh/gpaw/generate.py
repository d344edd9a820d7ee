"""Batch generation of GPAW reference records, parallel over structures and resumable.

Each input frame becomes DIR/<stem>-<frame>.nc. A finished record is never
recomputed (records are written atomically, so existing files are complete);
failures are listed in DIR/failures.json and reported without stopping the others.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

from ase import Atoms

from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.gpaw.settings import GPAWSettings

__all__ = ["Job", "JobResult", "read_structures", "generate"]


@dataclass(frozen=True)
class Job:
    """One structure to compute: where it came from and where its record goes."""

    name: str
    source: str
    atoms: Atoms
    output: Path


@dataclass(frozen=True)
class JobResult:
    name: str
    source: str
    seconds: float
    error: str | None = None


def read_structures(paths: list[Path]) -> list[tuple[str, str, Atoms]]:
    """(name, source, atoms) for every frame of every ASE-readable file; MLHError on bad files."""
    from ase.io import read

    frames = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise MLHError(f"{path}: no such file")
        try:
            images = read(path, index=":")
        except Exception as err:  # ASE raises many types for unreadable input
            raise MLHError(f"{path}: not a readable structure file ({type(err).__name__}: {err})")
        if not images:
            raise MLHError(f"{path}: contains no structures")
        for n, atoms in enumerate(images):
            if len(atoms) == 0:
                raise MLHError(f"{path}: frame {n} has no atoms")
            if atoms.pbc.any() and atoms.cell.rank < 3:
                raise MLHError(f"{path}: frame {n} is periodic but its cell is not 3-dimensional")
            frames.append((f"{path.stem}-{n:04d}", f"{path}@{n}", atoms))
    names = [name for name, _, _ in frames]
    if len(set(names)) != len(names):
        raise MLHError("two input files share a file name stem; rename one of them")
    return frames


def _run_job(job: Job, settings: GPAWSettings, log_dir: Path) -> JobResult:
    from mlh.gpaw.reference import reference_record
    from mlh.record.io import write_record

    start = time.perf_counter()
    try:
        record = reference_record(job.atoms, settings, log=str(log_dir / f"{job.name}.txt"))
        seconds = time.perf_counter() - start
        record = replace(
            record,
            provenance={**record.provenance, "source": job.source, "wall_time_seconds": seconds},
        )
        write_record(record, job.output)
    except MLHError as err:
        return JobResult(job.name, job.source, time.perf_counter() - start, str(err))
    return JobResult(job.name, job.source, seconds)


def generate(
    structure_files: list[Path],
    output_dir: Path,
    settings: GPAWSettings,
    jobs: int = 2,
    progress: bool = True,
) -> list[JobResult]:
    """Compute a record for every frame not yet in `output_dir`; return results of this run.

    Raises:
        MLHError: unreadable input or an element GPAW cannot set up (before any work starts).
    """
    from tqdm import tqdm

    from mlh.gpaw.reference import check_elements

    frames = read_structures(structure_files)
    check_elements({s for _, _, atoms in frames for s in atoms.get_chemical_symbols()}, settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    log_dir = output_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    todo = [
        Job(name, source, atoms, output_dir / f"{name}.nc")
        for name, source, atoms in frames
        if not (output_dir / f"{name}.nc").exists()
    ]
    results: list[JobResult] = []
    bar = tqdm(total=len(frames), initial=len(frames) - len(todo), disable=not progress,
               desc="GPAW records", unit="structure")
    # GPAW's grid code is single-threaded; one BLAS thread per worker keeps cores for workers.
    env_backup = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    if jobs > 1:
        os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_run_job, job, settings, log_dir) for job in todo]
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                bar.update()
                if result.error:
                    bar.write(f"FAILED {result.source}: {result.error}")
    finally:
        bar.close()
        for key, value in env_backup.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    _write_failures(output_dir, results)
    return results


def _write_failures(output_dir: Path, results: list[JobResult]) -> None:
    """Keep DIR/failures.json listing the structures that failed in the latest run."""
    failures = {r.name: {"source": r.source, "error": r.error} for r in results if r.error}
    path = output_dir / "failures.json"
    if failures:
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(failures, indent=2))
    else:
        path.unlink(missing_ok=True)
