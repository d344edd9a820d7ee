"""First-step packs: a record's first-step baseline B, stored as B - H0 beside its pack.

The first-step baseline B = H0 + s (H[n0] - H0) (`mlh generate --first-step-share`,
benchmarks/first_step_baseline.py) costs a GPAW SCF step per record (15-45 s for a
36-atom SiO2 cell on 2 cores), an hour for the SiO2 training data. A first-step pack keeps
B - H0 rounded to a quantum (eV; int32 counts) and the provenance entries in which the B
record differs from its H0 record, so B comes back from the H0 record (itself unpacked from
its pack, `mlh.record.pack`) by one addition, within quantum / 2 per element: ~85 kB for a
36-atom SiO2 cell at 1e-5 eV. Same container as packs (a zip of LZMA-compressed .npy
members plus `meta.json`); suffix `.mlhstep`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlh.errors import MLHError
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import read_record, write_record
from mlh.record.pack import DEFAULT_QUANTUM, naming_file, read_members, same_structure, write_members

__all__ = [
    "FIRST_STEP_FORMAT", "FIRST_STEP_SUFFIX", "FirstStepPack", "first_step_pack", "with_first_step",
    "write_first_step_pack", "read_first_step_pack", "pack_first_steps", "unpack_first_steps",
]

FIRST_STEP_FORMAT = "mlh-first-step 1"
FIRST_STEP_SUFFIX = ".mlhstep"
FIRST_STEP_KEY = "baseline_first_step_share"
"""Provenance entry that marks a record whose baseline is a first step, not H0."""

_ARRAYS = ("numbers", "positions", "cell", "pair_i", "pair_j", "pair_shift", "step_pair", "step_onsite")


@dataclass(frozen=True, eq=False)
class FirstStepPack:
    """B - H0 of one structure in units of `quantum` (eV), with the structure (Å) and pair
    list of the H0 record it applies to and the provenance entries B adds."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_shift: np.ndarray
    step_pair: np.ndarray
    step_onsite: np.ndarray
    quantum: float
    provenance: dict[str, Any] = field(default_factory=dict)


def _check_same_layout(record: HamiltonianRecord, numbers: np.ndarray, positions: np.ndarray,
                       cell: np.ndarray, pairs: tuple[np.ndarray, np.ndarray, np.ndarray], what: str) -> None:
    if not same_structure(record, numbers, positions, cell):
        raise MLHError(f"{what} is of another structure")
    if (len(record.pair_i) != len(pairs[0]) or np.any(record.pair_i != pairs[0])
            or np.any(record.pair_j != pairs[1]) or np.any(record.pair_shift != pairs[2])):
        raise MLHError(f"{what} has another pair list")


def _check_zeroth_step(record: HamiltonianRecord) -> None:
    if not record.has_baseline:
        raise MLHError("the H0 record has no baseline (mlh generate --baseline)")
    if FIRST_STEP_KEY in record.provenance:
        raise MLHError("the H0 record's baseline is already a first step, not H0")


def first_step_pack(first_step: HamiltonianRecord, zeroth_step: HamiltonianRecord,
                    quantum: float = DEFAULT_QUANTUM) -> FirstStepPack:
    """The first-step pack of a record whose baseline is B, from the record of the same
    structure and pairs whose baseline is H0.

    Raises:
        MLHError: B is not a first-step baseline, the H0 record is not one of H0 or of
            another structure or pair list, a non-positive quantum, or B - H0 too large for it.
    """
    if not first_step.has_baseline or FIRST_STEP_KEY not in first_step.provenance:
        raise MLHError("the record's baseline is not a first step (no provenance entry "
                       f"{FIRST_STEP_KEY!r})")
    _check_zeroth_step(zeroth_step)
    _check_same_layout(zeroth_step, first_step.numbers, first_step.positions, first_step.cell,
                       (first_step.pair_i, first_step.pair_j, first_step.pair_shift), "the H0 record")
    if not quantum > 0:
        raise MLHError(f"the quantum must be positive, got {quantum}")
    counts = [np.rint((B - H0) / quantum) for B, H0 in ((first_step.H0_pair, zeroth_step.H0_pair),
                                                         (first_step.H0_onsite, zeroth_step.H0_onsite))]
    largest = max(float(np.abs(c).max(initial=0)) for c in counts)
    if largest >= 2**31:
        raise MLHError(f"|B - H0| reaches {largest * quantum:.3g} eV, too large for a quantum of {quantum} eV")
    return FirstStepPack(
        numbers=first_step.numbers, positions=first_step.positions, cell=first_step.cell,
        pair_i=first_step.pair_i, pair_j=first_step.pair_j, pair_shift=first_step.pair_shift,
        step_pair=counts[0].astype(np.int32), step_onsite=counts[1].astype(np.int32),
        quantum=float(quantum),
        provenance={key: value for key, value in first_step.provenance.items()
                    if zeroth_step.provenance.get(key) != value},
    )


def with_first_step(zeroth_step: HamiltonianRecord, pack: FirstStepPack) -> HamiltonianRecord:
    """The record `zeroth_step` (baseline H0) with its baseline replaced by the pack's B.

    Raises:
        MLHError: the record's baseline is not H0, or it is of another structure or pair list.
    """
    _check_zeroth_step(zeroth_step)
    _check_same_layout(zeroth_step, pack.numbers, pack.positions, pack.cell,
                       (pack.pair_i, pack.pair_j, pack.pair_shift), "the H0 record")
    if pack.step_pair.shape != zeroth_step.H0_pair.shape or pack.step_onsite.shape != zeroth_step.H0_onsite.shape:
        raise MLHError("the first-step pack's block sizes differ from the H0 record's")
    return replace(
        zeroth_step,
        H0_pair=zeroth_step.H0_pair + pack.quantum * pack.step_pair,
        H0_onsite=zeroth_step.H0_onsite + pack.quantum * pack.step_onsite,
        provenance={**zeroth_step.provenance, **pack.provenance,
                    "unpacked_first_step": f"B = H0 + (B - H0) rounded to {pack.quantum:g} eV"},
    )


def write_first_step_pack(pack: FirstStepPack, path: str | os.PathLike) -> Path:
    """Write `pack` to `path` atomically."""
    return write_members(path, {"format": FIRST_STEP_FORMAT, "quantum_ev": pack.quantum,
                                "provenance": pack.provenance},
                         {name: getattr(pack, name) for name in _ARRAYS})


def read_first_step_pack(path: str | os.PathLike) -> FirstStepPack:
    """Read a first-step pack; MLHError naming the file on any problem."""
    meta, arrays = read_members(path, FIRST_STEP_FORMAT, _ARRAYS)
    try:
        return FirstStepPack(**{name: arrays[name] for name in _ARRAYS},
                             quantum=float(meta["quantum_ev"]), provenance=dict(meta.get("provenance", {})))
    except (KeyError, TypeError, ValueError) as err:
        raise MLHError(f"{path}: bad first-step pack metadata ({err})") from None


def _zeroth_step_file(file: Path, zeroth_step_dir: Path) -> Path:
    path = zeroth_step_dir / f"{file.stem}.nc"
    if not path.exists():
        raise MLHError(f"{file}: no H0 record {path} of the same name")
    return path


def pack_first_steps(files: Sequence[Path], zeroth_step_dir: Path, output: Path,
                     quantum: float = DEFAULT_QUANTUM) -> int:
    """Pack each first-step record FILE, against ZEROTH_STEP_DIR/<stem>.nc, into
    OUTPUT/<stem>.mlhstep; every pair of records is read and checked before any pack is
    written. Returns the bytes written.

    Raises:
        MLHError naming the first file that cannot be read or packed.
    """
    packs = []
    for file in files:
        try:
            packs.append((file, first_step_pack(read_record(file),
                                                read_record(_zeroth_step_file(file, zeroth_step_dir)), quantum)))
        except MLHError as err:
            raise naming_file(err, file) from None
    output.mkdir(parents=True, exist_ok=True)
    return sum(write_first_step_pack(p, output / f"{f.stem}{FIRST_STEP_SUFFIX}").stat().st_size
               for f, p in packs)


def unpack_first_steps(files: Sequence[Path], zeroth_step_dir: Path, output: Path) -> tuple[int, int]:
    """Write OUTPUT/<stem>.nc, the record ZEROTH_STEP_DIR/<stem>.nc with the B of each
    first-step pack FILE, for the packs whose record is not written yet (each record whole
    or not at all; every H0 record is looked for before any is written). Returns (records
    written, records skipped as finished earlier).

    Raises:
        MLHError naming the first file that is missing, cannot be read or applied.
    """
    todo = []
    for file in files:
        try:
            todo.append((file, _zeroth_step_file(file, zeroth_step_dir), output / f"{file.stem}.nc"))
        except MLHError as err:
            raise naming_file(err, file) from None
    todo = [job for job in todo if not job[2].exists()]
    for file, zeroth_step_file, target in todo:
        try:
            record = with_first_step(read_record(zeroth_step_file), read_first_step_pack(file))
        except MLHError as err:
            raise naming_file(err, file) from None
        output.mkdir(parents=True, exist_ok=True)
        write_record(record, target)
    return len(todo), len(files) - len(todo)
