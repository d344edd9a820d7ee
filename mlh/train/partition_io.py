"""Slices of records on disk (NetCDF, one file per slice) and streamed as training samples.

`partition_files` writes the slices of one record to FOLDER/<record stem>-<hash>/
part-NNN.nc (the hash is of the record's path and the settings, so slicings with other
settings coexist) and a manifest `partition.json` naming the record (path, size,
modification time) and the settings; a later call with the same record and settings
reuses them unless the record changed. A `PartitionSamples` sequence reads one slice
from disk each time a sample is asked for, so training holds only the current batch in
memory. Every variable of a slice file has `long_name` and `units`. Lengths in Å,
energies in eV.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.model.config import ModelConfig, PartitionConfig, TrainConfig
from mlh.model.layouts import OutputLayouts
from mlh.model.predictor import basis_from_dict, basis_to_dict
from mlh.model.targets import learned_record
from mlh.record.io import read_record, write_dataset
from mlh.train.partition import Partition, partition_record, partition_sample

__all__ = [
    "PARTITION_FORMAT", "MANIFEST", "write_partition", "read_partition", "partition_files",
    "PartitionSamples", "partitioned_samples",
]

PARTITION_FORMAT = "1"
MANIFEST = "partition.json"

_VARIABLES = {
    "numbers": ("atom", "atomic number", "1"),
    "ghost": ("atom", "ghost atom (0/1)", "1"),
    "image_atom": ("atom", "index of the atom in the record", "1"),
    "image_shift": ("atom", "lattice shift of the image along the cut axis", "1"),
    "cell": (("lattice_vector", "xyz"), "lattice vectors of the record (rows)", "angstrom"),
    "edge_center": ("edge", "centre atom of the edge", "1"),
    "edge_neighbor": ("edge", "neighbour atom of the edge", "1"),
    "edge_vector": (("edge", "xyz"), "neighbour minus centre position", "angstrom"),
    "bond_i": ("bond", "first atom of the labelled pair", "1"),
    "bond_j": ("bond", "second atom of the labelled pair", "1"),
    "bond_shift": (("bond", "xyz"), "lattice shift R of the pair in the record", "1"),
    "bond_vector": (("bond", "xyz"), "tau_j + R cell - tau_i", "angstrom"),
    "H_onsite": ("onsite_value", "on-site H blocks of the labelled atoms, row-major", "eV"),
    "H_pair": ("pair_value", "H blocks of the labelled pairs, row-major", "eV"),
}
_ATTRIBUTES = (
    "n_labelled", "axis", "index", "count", "atom_cutoff", "bond_cutoff", "message_passing_steps", "source",
)


def write_partition(partition: Partition, path: Path) -> Path:
    """Write one slice to NetCDF at `path` (atomic); returns the path."""
    variables = {
        name: xr.Variable(dims, np.asarray(getattr(partition, name)), {"long_name": long_name, "units": units})
        for name, (dims, long_name, units) in _VARIABLES.items()
    }
    variables["ghost"] = variables["ghost"].astype(np.int8)
    attrs = {name: getattr(partition, name) for name in _ATTRIBUTES}
    attrs.update(
        mlh_partition_format=PARTITION_FORMAT,
        basis=json.dumps(basis_to_dict(partition.basis)),
        thickness_angstrom=partition.thickness,
    )
    return write_dataset(xr.Dataset(variables, coords={"xyz": ["x", "y", "z"]}, attrs=attrs), path)


def read_partition(path: Path) -> Partition:
    """Read a slice written by `write_partition`; MLHError naming the file if unreadable."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
        if ds.attrs.get("mlh_partition_format") != PARTITION_FORMAT:
            raise ValueError(f"format {ds.attrs.get('mlh_partition_format')!r}, expected {PARTITION_FORMAT!r}")
        arrays = {name: ds[name].values for name in _VARIABLES}
        attrs = {name: ds.attrs[name] for name in _ATTRIBUTES}
        return Partition(
            **{**arrays, "ghost": arrays["ghost"].astype(bool)},
            **{name: value.item() if isinstance(value, np.generic) else value for name, value in attrs.items()},
            basis=basis_from_dict(json.loads(ds.attrs["basis"])),
        )
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as error:
        raise MLHError(f"{path}: not a readable partition file ({error})") from None


def _settings(record: Path, config: PartitionConfig, model: ModelConfig) -> dict:
    """What the slices of `record` depend on (compared with the manifest to reuse them)."""
    return {
        "record": str(record),
        "axis": config.axis,
        "thickness": config.thickness,
        "count": config.count,
        "atom_cutoff": model.atom_centered.radial_basis.cutoff,
        "bond_cutoff": model.bond_centered.cutoff,
        "message_passing_steps": model.atom_centered.message_passing.steps,
        "target": model.target,
    }


def partition_files(
    record: Path, config: PartitionConfig, model: ModelConfig, folder: Path, log: Callable[[str], None] = print
) -> list[Path]:
    """Slice files of one record in FOLDER/<stem>-<hash>/, written now unless the manifest matches.

    Raises:
        MLHError: an unreadable record or one that cannot be partitioned (see
            `mlh.train.partition.partition_record`).
    """
    record = Path(record).resolve()
    if not record.is_file():
        raise MLHError(f"{record}: no such file")
    settings = _settings(record, config, model)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    target = Path(folder) / f"{record.stem}-{digest}"
    stat = record.stat()
    settings.update(record_bytes=stat.st_size, record_mtime_ns=stat.st_mtime_ns)
    manifest = target / MANIFEST
    if manifest.is_file():
        saved = json.loads(manifest.read_text())
        files = [target / name for name in saved.get("files", [])]
        if saved.get("settings") == settings and all(f.is_file() for f in files):
            return files
    partitions = partition_record(learned_record(read_record(record), model.target, str(record)),
                                  config, model, str(record))
    target.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    for old in target.glob("part-*.nc"):
        old.unlink()
    files = [write_partition(p, target / f"part-{p.index:03d}.nc") for p in partitions]
    with atomic_output(manifest) as tmp:
        tmp.write_text(json.dumps({"settings": settings, "files": [f.name for f in files]}, indent=1))
    sizes = [p.n_atoms for p in partitions]
    labelled = [p.n_labelled for p in partitions]
    log(
        f"{record.name}: {len(partitions)} slices of {partitions[0].thickness:.3g} Å along axis {config.axis}, "
        f"{min(labelled)}-{max(labelled)} labelled and {min(sizes)}-{max(sizes)} atoms in all per slice"
    )
    return files


class PartitionSamples(Sequence):
    """Training samples of slice files, each read from disk when asked for (nothing is cached)."""

    def __init__(self, files: Sequence[Path], layouts: OutputLayouts, model: ModelConfig):
        self.files = list(files)
        self.layouts = layouts
        self.model = model

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        path = self.files[index]
        return partition_sample(read_partition(path), self.layouts, self.model, str(path))


def partitioned_samples(
    records: Sequence[Path], layouts: OutputLayouts, config: TrainConfig, log: Callable[[str], None] = print
) -> PartitionSamples:
    """Streamed samples of the slices of `records` (made or reused in data.partition.folder,
    default OUTPUT/partitions)."""
    partition = config.data.partition
    folder = partition.folder or Path(config.output) / "partitions"
    files = [f for record in records for f in partition_files(record, partition, config.model, folder, log)]
    return PartitionSamples(files, layouts, config.model)
