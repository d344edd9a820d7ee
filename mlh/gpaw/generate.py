"""Batch generation of GPAW reference records, parallel over structures and resumable.

Each input frame becomes DIR/<stem>-<frame>.nc. A finished record is never
recomputed (records are written atomically, so existing files are complete);
failures (unreadable files, unknown elements, atoms too close, failed SCF) are listed
in DIR/failures.json and reported without stopping the others. The worker processes die
with the main process (Linux parent-death signal), and DIR/.mlh.lock keeps a second run
out of a folder that a running one writes into.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
from ase import Atoms

from mlh.errors import MLHError
from mlh.file_output import output_lock
from mlh.gpaw.batch import JobResult, run_batch, write_failures
from mlh.gpaw.settings import GPAWSettings

__all__ = [
    "Job", "JobResult", "Generation", "collect_structures", "read_structures", "check_distances",
    "generate",
]


@dataclass(frozen=True)
class Job:
    """One structure to compute: where it came from and where its record goes."""

    name: str
    source: str
    atoms: Atoms
    output: Path


@dataclass(frozen=True)
class Generation:
    """Outcome of a `generate` run: results of the structures tried in this run (failures
    before any GPAW work included) and the count of records an earlier run had finished."""

    results: list[JobResult] = field(default_factory=list)
    skipped: int = 0

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if r.error]


def _frames_of(path: Path) -> list[tuple[str, str, Atoms]]:
    """(name, source, atoms) of every frame of one ASE-readable file; MLHError naming it."""
    from ase.io import read

    if not path.is_file():
        raise MLHError(f"{path}: no such file")
    try:
        images = read(path, index=":")
    except KeyError as err:  # ASE looks element symbols up in a dict
        raise MLHError(f"{path}: unknown element symbol {err.args[0]!r}") from None
    except Exception as err:  # ASE raises many types for unreadable input
        raise MLHError(f"{path}: not a readable structure file ({type(err).__name__}: {err})") from None
    if not images:
        raise MLHError(f"{path}: contains no structures")
    for n, atoms in enumerate(images):
        if len(atoms) == 0:
            raise MLHError(f"{path}: frame {n} has no atoms")
        if atoms.pbc.any() and atoms.cell.rank < 3:
            raise MLHError(f"{path}: frame {n} is periodic but its cell is not 3-dimensional")
    return [(f"{path.stem}-{n:04d}", f"{path}@{n}", atoms) for n, atoms in enumerate(images)]


def collect_structures(
    paths: list[Path],
) -> tuple[list[tuple[str, str, Atoms]], list[tuple[Path, str]]]:
    """(name, source, atoms) for every frame of the readable files, and (file, problem
    naming the file) for every unreadable one.

    Raises:
        MLHError: two files share a name stem (their outputs would collide).
    """
    frames, problems = [], []
    for path in map(Path, paths):
        try:
            frames += _frames_of(path)
        except MLHError as err:
            problems.append((path, str(err)))
    names = [name for name, _, _ in frames]
    if len(set(names)) != len(names):
        raise MLHError("two input files share a file name stem; rename one of them")
    return frames, problems


def read_structures(paths: list[Path]) -> list[tuple[str, str, Atoms]]:
    """(name, source, atoms) for every frame of every ASE-readable file; MLHError on bad files."""
    frames, problems = collect_structures(paths)
    if problems:
        raise MLHError(problems[0][1])
    return frames


MIN_DISTANCE = 0.5
"""Default closest distance (Å) of two atoms in a structure given to GPAW; `mlh infer`
refuses closer atoms with the same limit (`mlh.model.graph.MIN_DISTANCE`)."""


def check_distances(atoms: Atoms, minimum: float, source: str) -> None:
    """MLHError naming the closest pair of atoms (periodic images included) if two are
    closer than `minimum` (Å)."""
    from ase.neighborlist import neighbor_list

    i, j, distance = neighbor_list("ijd", atoms, minimum)
    if len(distance):
        k = int(np.argmin(distance))
        raise MLHError(f"{source}: atoms {i[k]} and {j[k]} are {distance[k]:.3f} Å apart (less than "
                       f"{minimum} Å); the structure is unphysical")


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
        return JobResult(job.name, job.source, time.perf_counter() - start, f"{job.source}: {err}")
    return JobResult(job.name, job.source, seconds)


def generate(
    structure_files: list[Path],
    output_dir: Path,
    settings: GPAWSettings,
    jobs: int = 2,
    progress: bool = True,
    min_distance: float = MIN_DISTANCE,
) -> Generation:
    """Compute a record for every frame not yet in `output_dir`.

    Unreadable files, frames with an element GPAW cannot set up and frames with atoms
    closer than `min_distance` (Å) fail before any GPAW work; the other frames go on.

    Raises:
        MLHError: another run holds the output folder, or two inputs share a name stem.
    """
    frames, problems = collect_structures(structure_files)
    results = [JobResult(path.stem, str(path), 0.0, problem) for path, problem in problems]
    frames, refused = _screen(frames, settings, min_distance)
    results += refused
    if not frames and not output_dir.is_dir():
        return Generation(results)  # nothing to do: leave no folder behind
    with output_lock(output_dir, "mlh generate"):
        log_dir = output_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        todo = [Job(name, source, atoms, output_dir / f"{name}.nc") for name, source, atoms in frames
                if not (output_dir / f"{name}.nc").exists()]
        results += run_batch(todo, partial(_run_job, settings=settings, log_dir=log_dir), jobs,
                             progress, "GPAW records", finished_before=len(frames) - len(todo))
        write_failures(output_dir, results)
    return Generation(results, len(frames) - len(todo))


def _screen(frames: list[tuple[str, str, Atoms]], settings: GPAWSettings, min_distance: float
            ) -> tuple[list[tuple[str, str, Atoms]], list[JobResult]]:
    """The frames GPAW can run, and a failed result for each frame with an element without
    PAW setup or basis, or with atoms closer than `min_distance` (Å)."""
    from mlh.gpaw.reference import check_elements

    missing: dict[str, str] = {}
    for symbol in sorted({s for _, _, atoms in frames for s in atoms.get_chemical_symbols()}):
        try:
            check_elements({symbol}, settings)
        except MLHError as err:
            missing[symbol] = str(err)
    good, refused = [], []
    for name, source, atoms in frames:
        try:
            bad = sorted(set(atoms.get_chemical_symbols()) & set(missing))
            if bad:
                raise MLHError(f"{source}: {missing[bad[0]]}")
            check_distances(atoms, min_distance, source)
        except MLHError as err:
            refused.append(JobResult(name, source, 0.0, str(err)))
        else:
            good.append((name, source, atoms))
    return good, refused
