"""HamiltonianRecord <-> xarray Dataset <-> NetCDF4 file (format in docs/schema.md).

Writes are atomic (temporary file in the same folder, then rename), so a killed
job never leaves a partial record behind.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.record.basis import Basis, SpeciesBasis
from mlh.record.hamiltonian import READABLE_SCHEMA_VERSIONS, SCHEMA_VERSION, HamiltonianRecord, Labels

__all__ = [
    "record_to_dataset", "record_from_dataset", "write_dataset", "write_record", "read_record",
    "record_files", "collect_files",
]

_XYZ = ["x", "y", "z"]
_SCALAR_LABELS = {
    "energy": ("total energy extrapolated to zero smearing", "eV"),
    "free_energy": ("Mermin free energy", "eV"),
    "fermi_level": ("Fermi level", "eV"),
    "n_electrons": ("number of valence electrons", "1"),
}


def _var(dims, data, long_name: str, units: str) -> xr.Variable:
    return xr.Variable(dims, data, attrs={"long_name": long_name, "units": units})


def record_to_dataset(record: HamiltonianRecord) -> xr.Dataset:
    """The record as an xarray Dataset with units and long names on every variable."""
    species = record.basis.species
    radial_species = np.concatenate(
        [np.full(len(s.ls), n) for n, s in enumerate(species)]
    ).astype(np.int32)
    v = {
        "numbers": _var("atom", record.numbers.astype(np.int32), "atomic number", "1"),
        "positions": _var(("atom", "xyz"), record.positions, "Cartesian position", "angstrom"),
        "cell": _var(("lattice_vector", "xyz"), record.cell, "lattice vectors (rows)", "angstrom"),
        "pbc": _var("xyz", record.pbc.astype(np.int8), "periodic direction (0/1)", "1"),
        "ghost": _var("atom", record.ghost.astype(np.int8), "ghost atom (0/1)", "1"),
        "species_number": _var("species", np.array([s.number for s in species], np.int32),
                               "atomic number of the basis species", "1"),
        "radial_species": _var("radial", radial_species, "species index of radial function", "1"),
        "radial_l": _var("radial", np.array([l for s in species for l in s.ls], np.int32),
                         "angular momentum of radial function", "1"),
        "radial_rcut": _var("radial", np.array([r for s in species for r in s.rcuts], float),
                            "cutoff radius of radial function", "angstrom"),
        "radial_label": _var("radial", np.array([x for s in species for x in s.labels], object),
                             "radial function description", ""),
        "pair_i": _var("pair", record.pair_i.astype(np.int32), "first atom of pair", "1"),
        "pair_j": _var("pair", record.pair_j.astype(np.int32), "second atom of pair", "1"),
        "pair_shift": _var(("pair", "xyz"), record.pair_shift.astype(np.int32),
                           "lattice shift R of the second atom", "1"),
        "S_pair": _var("pair_value", record.S_pair, "overlap S(R) pair blocks, row-major", "1"),
        "S_onsite": _var("onsite_value", record.S_onsite, "on-site overlap blocks", "1"),
    }
    if record.H_pair is not None:
        v["H_pair"] = _var(("spin", "pair_value"), record.H_pair,
                           "Hamiltonian H(R) pair blocks, row-major", "eV")
        v["H_onsite"] = _var(("spin", "onsite_value"), record.H_onsite,
                             "on-site Hamiltonian blocks", "eV")
    if record.H0_pair is not None:
        v["H0_pair"] = _var(("spin", "pair_value"), record.H0_pair,
                            "zeroth-step Hamiltonian H0(R) pair blocks, row-major", "eV")
        v["H0_onsite"] = _var(("spin", "onsite_value"), record.H0_onsite,
                              "on-site zeroth-step Hamiltonian blocks", "eV")
    labels = record.labels
    for name, (long_name, units) in _SCALAR_LABELS.items():
        value = getattr(labels, name)
        if value is not None:
            v[name] = _var((), float(value), long_name, units)
    if labels.forces is not None:
        v["forces"] = _var(("atom", "xyz"), labels.forces, "force", "eV/angstrom")
    if labels.eigenvalues is not None:
        v["kpoints"] = _var(("kpoint", "xyz"), labels.kpoints, "k-point, reduced coordinates", "1")
        v["kpoint_weights"] = _var("kpoint", labels.kpoint_weights, "k-point weight", "1")
        v["eigenvalues"] = _var(("spin", "kpoint", "band"), labels.eigenvalues,
                                "Kohn-Sham eigenvalue", "eV")
    attrs = {f"provenance_{k}": value for k, value in record.provenance.items()}
    attrs.update(mlh_schema_version=SCHEMA_VERSION, basis_name=record.basis.name)
    return xr.Dataset(v, coords={"xyz": _XYZ}, attrs=attrs)


def _optional(ds: xr.Dataset, name: str) -> np.ndarray | None:
    return ds[name].values if name in ds else None


def record_from_dataset(ds: xr.Dataset) -> HamiltonianRecord:
    """Inverse of record_to_dataset; MLHError if variables are missing or inconsistent."""
    version = ds.attrs.get("mlh_schema_version")
    if version not in READABLE_SCHEMA_VERSIONS:
        raise MLHError(f"schema version {version!r} is not one of the supported "
                       f"{', '.join(map(repr, READABLE_SCHEMA_VERSIONS))}")
    required = ["numbers", "positions", "cell", "pbc", "ghost", "species_number",
                "radial_species", "radial_l", "radial_rcut", "radial_label",
                "pair_i", "pair_j", "pair_shift", "S_pair", "S_onsite"]
    missing = [name for name in required if name not in ds]
    if missing:
        raise MLHError(f"missing variables {missing}")
    radial_species = ds["radial_species"].values
    species = tuple(
        SpeciesBasis(
            number=int(z),
            ls=tuple(int(l) for l in ds["radial_l"].values[radial_species == n]),
            rcuts=tuple(float(r) for r in ds["radial_rcut"].values[radial_species == n]),
            labels=tuple(str(x) for x in ds["radial_label"].values[radial_species == n]),
        )
        for n, z in enumerate(ds["species_number"].values)
    )
    scalar = {name: (float(ds[name]) if name in ds else None) for name in _SCALAR_LABELS}
    labels = Labels(
        **scalar,
        forces=_optional(ds, "forces"),
        kpoints=_optional(ds, "kpoints"),
        kpoint_weights=_optional(ds, "kpoint_weights"),
        eigenvalues=_optional(ds, "eigenvalues"),
    )
    provenance = _provenance(ds.attrs)
    return HamiltonianRecord(
        numbers=ds["numbers"].values.astype(np.int64),
        positions=ds["positions"].values.astype(float),
        cell=ds["cell"].values.astype(float),
        pbc=ds["pbc"].values.astype(bool),
        ghost=ds["ghost"].values.astype(bool),
        basis=Basis(name=str(ds.attrs.get("basis_name", "")), species=species),
        pair_i=ds["pair_i"].values.astype(np.int64),
        pair_j=ds["pair_j"].values.astype(np.int64),
        pair_shift=ds["pair_shift"].values.astype(np.int64),
        S_pair=ds["S_pair"].values,
        S_onsite=ds["S_onsite"].values,
        H_pair=_optional(ds, "H_pair"),
        H_onsite=_optional(ds, "H_onsite"),
        H0_pair=_optional(ds, "H0_pair"),
        H0_onsite=_optional(ds, "H0_onsite"),
        labels=labels,
        provenance=provenance,
    )


def labelled_variable(dims, data, long_name: str, units: str) -> xr.Variable:
    """An xarray Variable with `long_name` and `units` attributes (for result Datasets)."""
    return xr.Variable(dims, data, attrs={"long_name": long_name, "units": units})


def write_dataset(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write any Dataset to NetCDF4 at `path` atomically (temporary file, then rename)."""
    path = Path(path)
    with atomic_output(path) as tmp:
        dataset.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
    return path


def write_record(record: HamiltonianRecord, path: str | os.PathLike) -> Path:
    """Write `record` to NetCDF4 at `path` atomically; returns the path."""
    return write_dataset(record_to_dataset(record), path)


def record_provenance(path: str | os.PathLike) -> dict:
    """The provenance of a record file, without reading its arrays."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            attrs = dict(ds.attrs)
    except (OSError, ValueError, RuntimeError) as err:
        raise MLHError(f"{path}: not a readable NetCDF record ({err})") from None
    return _provenance(attrs)


def _provenance(attrs: dict) -> dict:
    """Record provenance from the Dataset attributes `provenance_<key>`."""
    return {key.removeprefix("provenance_"): (value.item() if isinstance(value, np.generic) else value)
            for key, value in attrs.items() if key.startswith("provenance_")}


def read_record(path: str | os.PathLike) -> HamiltonianRecord:
    """Read a record written by write_record; MLHError naming the file on any problem."""
    path = Path(path)
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except FileNotFoundError:
        raise MLHError(f"{path}: no such file") from None
    except (OSError, ValueError, RuntimeError) as err:
        raise MLHError(f"{path}: not a readable NetCDF record ({err})") from None
    try:
        return record_from_dataset(ds)
    except MLHError as err:
        raise MLHError(f"{path}: {err}") from None


def record_files(paths: Sequence[Path]) -> list[Path]:
    """Record files (*.nc) of files and folders, sorted per folder; MLHError if none or missing."""
    return collect_files(paths, ".nc", "records", skip={"scale_shift.nc"})


def collect_files(paths: Sequence[Path], suffix: str, kind: str, skip: Collection[str] = ()) -> list[Path]:
    """The files given, and the *SUFFIX files of the folders given (sorted per folder; hidden
    temporary files and names in `skip` left out); MLHError naming `kind` if none or missing."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(p for p in sorted(path.glob(f"*{suffix}"))
                         if p.name not in skip and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            raise MLHError(f"{path}: no such file or folder")
    if not files:
        raise MLHError(f"no {kind} (*{suffix}) in {', '.join(map(str, paths))}")
    return files
