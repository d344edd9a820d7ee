"""Packs: compact files of GPAW training records that keep only what an SCF costs.

A pack holds the structure, the pair list, the SCF correction dH = H - H0 rounded to a
multiple of `quantum` (eV; stored as int32 counts), the DFT labels and the provenance.
S(R) and the zeroth-step H0(R) are not stored: GPAW recomputes them exactly and cheaply
(no SCF; `mlh.gpaw.unpack`), and H = H0 + dH comes back within quantum / 2 per element.
A 36-atom SiO2 record of 5 MB packs into ~90 kB at 1e-5 eV.

On disk a pack is a zip of .npy members compressed with LZMA (readable by numpy.load)
plus `meta.json` (format, quantum, scalar labels, provenance); suffix `.mlhpack`.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.record.hamiltonian import HamiltonianRecord, Labels
from mlh.record.io import read_record

__all__ = [
    "PACK_FORMAT", "PACK_SUFFIX", "DEFAULT_QUANTUM", "PackedRecord", "pack_record",
    "pack_records", "unpack_record", "write_pack", "read_pack", "write_members", "read_members",
    "same_structure", "naming_file",
]

PACK_FORMAT = "mlh-pack 1"
PACK_SUFFIX = ".mlhpack"
DEFAULT_QUANTUM = 1e-5
"""Rounding step of dH (eV): errors of at most 5 µeV, far below any model's (>= 0.1 meV)."""

_ARRAYS = ("numbers", "positions", "cell", "pbc", "ghost", "pair_i", "pair_j", "pair_shift",
           "dH_pair", "dH_onsite")
_LABEL_ARRAYS = ("forces", "kpoints", "kpoint_weights", "eigenvalues")
_LABEL_SCALARS = ("energy", "free_energy", "fermi_level", "n_electrons")


@dataclass(frozen=True, eq=False)
class PackedRecord:
    """A record without S and H0: structure (Å), pairs, dH in units of `quantum` (eV)."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    ghost: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_shift: np.ndarray
    dH_pair: np.ndarray
    dH_onsite: np.ndarray
    quantum: float
    labels: Labels = field(default_factory=Labels)
    provenance: dict[str, Any] = field(default_factory=dict)


def pack_record(record: HamiltonianRecord, quantum: float = DEFAULT_QUANTUM) -> PackedRecord:
    """The pack of a record that carries both H and H0 (`mlh generate --baseline`).

    Raises:
        MLHError: no H or no H0, a non-positive quantum, or dH too large for it.
    """
    if not (record.has_hamiltonian and record.has_baseline):
        raise MLHError("only records with both H and H0 can be packed (mlh generate --baseline)")
    if not quantum > 0:
        raise MLHError(f"the quantum must be positive, got {quantum}")
    counts = [np.rint((H - H0) / quantum) for H, H0 in
              ((record.H_pair, record.H0_pair), (record.H_onsite, record.H0_onsite))]
    largest = max(float(np.abs(c).max(initial=0)) for c in counts)
    if largest >= 2**31:
        raise MLHError(f"|H - H0| reaches {largest * quantum:.3g} eV, too large for a quantum of {quantum} eV")
    return PackedRecord(
        numbers=record.numbers, positions=record.positions, cell=record.cell, pbc=record.pbc,
        ghost=record.ghost, pair_i=record.pair_i, pair_j=record.pair_j,
        pair_shift=record.pair_shift, dH_pair=counts[0].astype(np.int32),
        dH_onsite=counts[1].astype(np.int32), quantum=float(quantum), labels=record.labels,
        provenance=dict(record.provenance),
    )


def pack_records(files: Sequence[Path], output: Path, quantum: float = DEFAULT_QUANTUM) -> int:
    """Pack each record file into OUTPUT/<stem>.mlhpack; every record is read and checked
    before any pack is written. Returns the bytes written.

    Raises:
        MLHError naming the first file that cannot be read or packed.
    """
    packed = []
    for file in files:
        try:
            packed.append((file, pack_record(read_record(file), quantum)))
        except MLHError as err:
            raise naming_file(err, file) from None
    output.mkdir(parents=True, exist_ok=True)
    return sum(write_pack(p, output / f"{f.stem}{PACK_SUFFIX}").stat().st_size for f, p in packed)


def unpack_record(packed: PackedRecord, baseline: HamiltonianRecord) -> HamiltonianRecord:
    """The record of `packed`, with S and H0 taken from `baseline`: a record of the same
    structure with S and H0 (GPAW task "baseline") whose pairs include the packed ones.

    Raises:
        MLHError: the baseline is of another structure or lacks a packed pair.
    """
    if not baseline.has_baseline:
        raise MLHError("the recomputed record has no H0")
    if not same_structure(baseline, packed.numbers, packed.positions, packed.cell):
        raise MLHError("the recomputed H0 is of another structure than the pack")
    where = {key: n for n, key in enumerate(_pair_keys(baseline.pair_i, baseline.pair_j,
                                                       baseline.pair_shift))}
    keys = _pair_keys(packed.pair_i, packed.pair_j, packed.pair_shift)
    missing = [key for key in keys if key not in where]
    if missing:
        raise MLHError(f"pair {missing[0]} of the pack has no recomputed H0 and S "
                       f"({len(missing)} such pairs): the basis or GPAW settings differ")
    chosen = np.array([where[key] for key in keys], dtype=np.int64)
    sizes = np.diff(baseline.pair_value_offsets)[chosen]
    packed_starts = np.concatenate([[0], np.cumsum(sizes)])[:-1]
    values = (np.arange(int(sizes.sum()))
              + np.repeat(baseline.pair_value_offsets[chosen] - packed_starts, sizes))
    if packed.dH_pair.shape[-1] != len(values) or packed.dH_onsite.shape[-1] != baseline.n_onsite_values:
        raise MLHError("the pack's block sizes differ from the recomputed basis")
    H0_pair = baseline.H0_pair[:, values]
    return replace(
        baseline,
        pair_i=packed.pair_i, pair_j=packed.pair_j, pair_shift=packed.pair_shift,
        S_pair=baseline.S_pair[values],
        H_pair=H0_pair + packed.quantum * packed.dH_pair,
        H_onsite=baseline.H0_onsite + packed.quantum * packed.dH_onsite,
        H0_pair=H0_pair,
        labels=packed.labels,
        provenance={**packed.provenance, "unpacked": (
            f"H = H0 + (H - H0) rounded to {packed.quantum:g} eV; S and H0 recomputed with "
            f"{baseline.provenance.get('code', '?')} {baseline.provenance.get('code_version', '?')}")},
    )


def same_structure(record: HamiltonianRecord, numbers: np.ndarray, positions: np.ndarray,
                   cell: np.ndarray) -> bool:
    """Whether `record` has these atoms, positions and cell (Å, to 1e-8)."""
    return (len(record.numbers) == len(numbers) and bool(np.all(record.numbers == numbers))
            and np.allclose(record.positions, positions, rtol=0, atol=1e-8)
            and np.allclose(record.cell, cell, rtol=0, atol=1e-8))


def naming_file(err: MLHError, file: os.PathLike) -> MLHError:
    """`err` with its message led by the file's name (unless it already is)."""
    return MLHError(err if str(err).startswith(str(file)) else f"{file}: {err}")


def _pair_keys(i: np.ndarray, j: np.ndarray, shift: np.ndarray) -> list[tuple[int, ...]]:
    return [(int(a), int(b), *map(int, r)) for a, b, r in zip(i, j, shift)]


def write_pack(packed: PackedRecord, path: str | os.PathLike) -> Path:
    """Write `packed` to `path` atomically (LZMA-compressed zip of .npy members)."""
    labels = packed.labels
    arrays = {name: getattr(packed, name) for name in _ARRAYS}
    arrays.update({name: getattr(labels, name) for name in _LABEL_ARRAYS
                   if getattr(labels, name) is not None})
    meta = {
        "format": PACK_FORMAT,
        "quantum_ev": packed.quantum,
        "labels": {name: getattr(labels, name) for name in _LABEL_SCALARS
                   if getattr(labels, name) is not None},
        "provenance": packed.provenance,
    }
    return write_members(path, meta, arrays)


def write_members(path: str | os.PathLike, meta: dict, arrays: dict[str, np.ndarray]) -> Path:
    """Write `meta` (as meta.json) and `arrays` (as .npy members) to the zip file `path`,
    LZMA-compressed, atomically."""
    path = Path(path)
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_LZMA) as archive:
        archive.writestr("meta.json", json.dumps(meta, indent=1, default=_json_scalar))
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(array), allow_pickle=False)
            archive.writestr(f"{name}.npy", buffer.getvalue())
    return path


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def read_members(path: str | os.PathLike, fmt: str, required: Sequence[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a zip written by write_members whose meta says format `fmt` and
    which holds the `required` arrays; MLHError naming the file on any problem."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("meta.json"))
            names = {Path(n).stem for n in archive.namelist() if n.endswith(".npy")}
            arrays = {name: np.load(io.BytesIO(archive.read(f"{name}.npy")), allow_pickle=False)
                      for name in names}
    except FileNotFoundError:
        raise MLHError(f"{path}: no such file") from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise MLHError(f"{path}: not a readable mlh pack ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise MLHError(f"{path}: not an mlh pack of format {fmt!r}")
    missing = [name for name in required if name not in arrays]
    if missing:
        raise MLHError(f"{path}: the pack lacks {missing}")
    return meta, arrays


def read_pack(path: str | os.PathLike) -> PackedRecord:
    """Read a pack written by write_pack; MLHError naming the file on any problem."""
    meta, arrays = read_members(path, PACK_FORMAT, _ARRAYS)
    try:
        labels = Labels(**{name: float(v) for name, v in meta.get("labels", {}).items()},
                        **{name: arrays[name] for name in _LABEL_ARRAYS if name in arrays})
        return PackedRecord(**{name: arrays[name] for name in _ARRAYS},
                            quantum=float(meta["quantum_ev"]), labels=labels,
                            provenance=dict(meta.get("provenance", {})))
    except (KeyError, TypeError, ValueError) as err:
        raise MLHError(f"{path}: bad pack metadata ({err})") from None
