"""Packs -> records: GPAW recomputes S(R) and H0(R) (no SCF), the pack adds H - H0.

Parallel over packs and resumable like `mlh generate` (DIR/<pack stem>.nc; finished
records are kept, failures listed in DIR/failures.json). A pack is only unpacked by the
GPAW version that made it, since H0 must be the one its dH was taken from.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlh.errors import MLHError
from mlh.file_output import output_lock
from mlh.gpaw.batch import JobResult, run_batch, write_failures
from mlh.gpaw.generate import Generation
from mlh.gpaw.record_settings import settings_from_record_provenance, structure_atoms
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import collect_files
from mlh.record.pack import PACK_SUFFIX, PackedRecord, naming_file, read_pack, unpack_record

__all__ = ["pack_files", "recomputed_record", "unpack"]


def pack_files(paths: Sequence[Path]) -> list[Path]:
    """Pack files of files and folders (*.mlhpack, sorted per folder); MLHError if none."""
    files = collect_files(paths, PACK_SUFFIX, "packs")
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        raise MLHError("two packs share a file name stem; their records would collide")
    return files


def recomputed_record(packed: PackedRecord) -> HamiltonianRecord:
    """The full record of a pack: GPAW's S and H0 for its structure and settings, plus dH.

    Raises:
        MLHError: another GPAW version made the pack, or GPAW cannot set the structure up.
    """
    from gpaw import __version__ as gpaw_version

    from mlh.gpaw.reference import reference_record

    made_with = packed.provenance.get("code_version")
    if packed.provenance.get("code") != "gpaw" or made_with != gpaw_version:
        raise MLHError(f"the pack was made with {packed.provenance.get('code')} {made_with}, this is "
                       f"GPAW {gpaw_version}: H0 could differ, so recompute the record with mlh generate")
    settings = settings_from_record_provenance(packed.provenance).model_copy(update={"task": "baseline"})
    atoms = structure_atoms(packed.numbers, packed.positions, packed.cell, packed.pbc, packed.ghost)
    return unpack_record(packed, reference_record(atoms, settings, block_tolerance=None))


@dataclass(frozen=True)
class _Job:
    name: str
    source: Path
    output: Path


def _run_job(job: _Job) -> JobResult:
    from mlh.record.io import write_record

    start = time.perf_counter()
    try:
        write_record(recomputed_record(read_pack(job.source)), job.output)
    except MLHError as err:
        return JobResult(job.name, str(job.source), time.perf_counter() - start, str(naming_file(err, job.source)))
    return JobResult(job.name, str(job.source), time.perf_counter() - start)


def unpack(paths: Sequence[Path], output_dir: Path, jobs: int = 2, progress: bool = True) -> Generation:
    """Write the record of every pack in `paths` (files or folders) not yet in `output_dir`.

    Raises:
        MLHError: no packs, or another run holds the output folder.
    """
    files = pack_files(paths)
    with output_lock(output_dir, "mlh unpack"):
        todo = [_Job(f.stem, f, output_dir / f"{f.stem}.nc") for f in files
                if not (output_dir / f"{f.stem}.nc").exists()]
        results = run_batch(todo, _run_job, jobs, progress, "records from packs",
                            finished_before=len(files) - len(todo))
        write_failures(output_dir, results)
    return Generation(results, len(files) - len(todo))
