"""The device-scale doping study (seed 001, sections 2.2.2 and 4.3-4.4), as a library.

structures (or ready Hamiltonian records) -> predicted Hamiltonians -> hole
concentrations -> one results table with the design variables -> a Bayesian linear
model. The per-structure work runs on Dask (`analysis.doping.batch`), resumable; design
variables are computed up front, so any that cannot be computed stops the study before
work starts. Energies in eV, lengths in Å, concentrations in cm^-2.
"""

from __future__ import annotations

import functools
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms

from analysis._common import provenance_attrs, variable
from analysis.doping.design import DESIGN_UNITS, DesignSpec, design_variables
from mlh.errors import MLHError

__all__ = ["HoleSettings", "StructureTask", "collect_tasks", "analyse_structure",
           "study_design", "results_table", "settings_attrs", "read_design_table", "plot_design"]


@dataclass(frozen=True)
class HoleSettings:
    """How the hole concentration is computed (analysis.hole; seed 001 defaults)."""

    species: tuple[str, ...] = ("W", "Se")
    window: tuple[float, float] = (0.0, 0.2)
    sigma: float = 0.05
    route: str = "auto"
    charge: float = 0.0
    area_axis: int | None = None


@dataclass(frozen=True)
class StructureTask:
    """One structure of the study: an ASE frame to predict, or a ready record to analyse."""

    name: str
    source: str
    atoms: Atoms | None = None
    record_path: str | None = None
    model: str | None = None
    hole: HoleSettings = field(default_factory=HoleSettings)
    records_dir: str | None = None


def _read_record_structure(path: Path) -> Atoms:
    from mlh.gpaw.record_settings import record_atoms
    from mlh.record.io import read_record

    return record_atoms(read_record(path))


def collect_tasks(paths: Sequence[Path], model: Path | None, hole: HoleSettings,
                  records_dir: Path | None = None) -> tuple[dict[str, StructureTask], dict[str, Atoms]]:
    """Tasks by name and their structures; MLHError for bad input before any work.

    Files ending in .nc are Hamiltonian records (analysed as they are); any other file
    is read with ASE (every frame) and needs `model`. Checks: files exist and read, at
    least one structure, a model folder with a readable model, every species known to it.
    """
    from analysis.doping.batch import task_names
    from mlh.gpaw.generate import read_structures

    paths = [Path(p) for p in paths]
    if not paths:
        raise MLHError("no input structures given")
    records = [p for p in paths if p.suffix == ".nc"]
    structure_files = [p for p in paths if p.suffix != ".nc"]
    tasks: dict[str, StructureTask] = {}
    structures: dict[str, Atoms] = {}
    if structure_files:
        if model is None:
            raise MLHError("structures need a model (--model) to predict their Hamiltonians")
        predictor = _load_predictor(str(model))
        for name, source, atoms in read_structures(structure_files):
            predictor.layouts.species_index(atoms.numbers, source)
            tasks[name] = StructureTask(name, source, atoms=atoms, model=str(model), hole=hole,
                                        records_dir=None if records_dir is None else str(records_dir))
            structures[name] = atoms
    for path in records:
        if not path.is_file():
            raise MLHError(f"{path}: no such file")
        tasks[path.stem] = StructureTask(path.stem, str(path), record_path=str(path), hole=hole)
        structures[path.stem] = _read_record_structure(path)
    task_names(list(tasks))
    return tasks, structures


@functools.lru_cache(maxsize=2)
def _load_predictor(folder: str):
    """The predictor of a model folder, loaded once per process."""
    from mlh.model.predictor import Predictor

    path = Path(folder)
    if not path.is_dir():
        raise MLHError(f"{path}: no such model folder")
    return Predictor.load(path)


def _peak_memory_gib() -> float:
    """Peak resident memory of this process so far (GiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20


def analyse_structure(task: StructureTask) -> dict[str, Any]:
    """Predict (or read) the Hamiltonian of one structure and compute its hole concentration.

    Runs on a Dask worker. Returns a JSON-serialisable row: Fermi level (eV), holes per
    cell and per cm^2 (total and per species), cell area (Å^2), sizes, the spectral route
    and timings (s); MLHError on any problem with this structure.
    """
    from analysis.hole import hole_concentration
    from analysis.select import spectrum_for
    from mlh.record.io import read_record, write_record

    start = time.perf_counter()
    if task.record_path is not None:
        record = read_record(task.record_path)
    else:
        from mlh.inference.prediction import predict_record

        record = predict_record(_load_predictor(task.model), task.atoms, source=task.source)
        if task.records_dir is not None:
            write_record(record, Path(task.records_dir) / f"{task.name}.nc")
    inferred = time.perf_counter()
    settings = task.hole
    margin = 5 * settings.sigma
    window = (min(settings.window[0] - margin, -0.3), settings.window[1] + margin)
    try:
        spectrum = spectrum_for(record, route=settings.route, charge=settings.charge, window=window)
        holes = hole_concentration(spectrum, species=settings.species, window=settings.window,
                                   sigma=settings.sigma, area_axis=settings.area_axis)
    except MLHError as err:
        raise MLHError(f"{task.source}: {err}") from None
    row = {
        "n_atoms": int(record.n_atoms),
        "n_orbitals": int(record.n_orbitals),
        "fermi_level": float(holes["fermi_level"]),
        "holes_per_cell": float(holes["holes_per_cell"]),
        "holes_per_area": float(holes["holes_per_area"]),
        "cell_area": float(holes["cell_area"]),
        "method": spectrum.method,
        "inference_seconds": inferred - start if task.record_path is None else 0.0,
        "analysis_seconds": time.perf_counter() - inferred,
        "worker_peak_memory": _peak_memory_gib(),
    }
    for species, value in zip(settings.species, holes["holes_species_per_area"].values):
        row[f"holes_per_area_{species}"] = float(value)
    return row


def read_design_table(path: Path, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """User design variables from a CSV with a `structure` column: {name: {variable: value}}.

    Raises MLHError for an unreadable file, no `structure` column, non-numeric values, or
    structures of the study missing from the table.
    """
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise MLHError(f"{path}: not a readable CSV table ({err})") from None
    if "structure" not in frame.columns:
        raise MLHError(f"{path}: needs a 'structure' column naming each structure")
    frame = frame.set_index(frame["structure"].astype(str)).drop(columns="structure")
    try:
        frame = frame.astype(float)
    except ValueError as err:
        raise MLHError(f"{path}: design variables must be numbers ({err})") from None
    missing = [n for n in names if n not in frame.index]
    if missing:
        raise MLHError(f"{path}: no row for structures {missing[:5]}"
                       + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return {name: frame.loc[name].to_dict() for name in names}


def study_design(structures: Mapping[str, Atoms], spec: DesignSpec,
                 table: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, dict[str, float]]:
    """Design variables of every structure: computed by `spec`, then overridden by `table`."""
    values = {}
    for name, atoms in structures.items():
        try:
            values[name] = design_variables(atoms, spec)
        except MLHError as err:
            raise MLHError(f"{name}: {err}") from None
        values[name].update((table or {}).get(name, {}))
    return values


_ROW_UNITS = {
    "n_atoms": ("atoms", "1"),
    "n_orbitals": ("orbitals", "1"),
    "fermi_level": ("Fermi level", "eV"),
    "holes_per_cell": ("projected states in E_F + window, per cell", "1"),
    "holes_per_area": ("hole concentration", "cm^-2"),
    "cell_area": ("layer area of the cell", "angstrom^2"),
    "inference_seconds": ("Hamiltonian prediction time (0 for given records)", "s"),
    "analysis_seconds": ("spectrum and hole concentration time", "s"),
    "worker_peak_memory": ("peak resident memory of the worker process so far", "GiB"),
}


def results_table(tasks: Mapping[str, StructureTask], design: Mapping[str, Mapping[str, float]],
                  rows: Mapping[str, Mapping[str, Any]], failures: Mapping[str, str],
                  attrs: Mapping[str, Any]) -> xr.Dataset:
    """One row per structure: design variables, results (NaN if failed), status and error."""
    names = list(tasks)
    numeric = sorted({k for row in rows.values() for k, v in row.items()
                      if isinstance(v, (int, float))})
    design_names = sorted({k for values in design.values() for k in values})
    data: dict[str, xr.Variable] = {
        "source": xr.Variable("structure", [tasks[n].source for n in names]),
        "status": xr.Variable("structure", ["ok" if n in rows else "failed" for n in names]),
        "error": xr.Variable("structure", [failures.get(n, "") for n in names]),
        "method": xr.Variable("structure", [rows.get(n, {}).get("method", "") for n in names]),
    }
    for key in design_names:
        long_name, units = DESIGN_UNITS.get(key, ("user design variable", "as given"))
        data[key] = variable("structure", [design[n].get(key, np.nan) for n in names], long_name, units)
    for key in numeric:
        long_name, units = _ROW_UNITS.get(key, (f"hole concentration, {key.rsplit('_', 1)[-1]} "
                                                "projection", "cm^-2"))
        data[key] = variable("structure", [float(rows.get(n, {}).get(key, np.nan)) for n in names],
                             long_name, units)
    return xr.Dataset(data, coords={"structure": names}, attrs={**provenance_attrs(), **attrs})


def settings_attrs(hole: HoleSettings, spec: DesignSpec, model: Path | None) -> dict[str, Any]:
    """NetCDF-safe attributes (and the resume fingerprint) of a study's settings."""
    attrs: dict[str, Any] = {"model": "" if model is None else str(Path(model).resolve())}
    for prefix, settings in (("hole", asdict(hole)), ("design", asdict(spec))):
        for key, value in settings.items():
            if isinstance(value, tuple):
                value = ",".join(map(str, value))
            attrs[f"{prefix}_{key}"] = "none" if value is None else value
    return attrs


def plot_design(table: xr.Dataset, variables: Sequence[str], path: Path,
                response: str = "holes_per_area") -> Path:
    """Seed fig. 2a: histograms of the design variables (diagonal) and pair scatter plots
    coloured by the response (off-diagonal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlh.file_output import atomic_output

    ok = table["status"].values == "ok"
    colour = table[response].values[ok]
    n = len(variables)
    figure, axes = plt.subplots(n, n, figsize=(2.6 * n + 1, 2.6 * n), squeeze=False)
    scatter = None
    for row, y_name in enumerate(variables):
        for col, x_name in enumerate(variables):
            ax = axes[row, col]
            x = table[x_name].values[ok]
            if row == col:
                ax.hist(x, bins=20, color="0.5")
            elif col < row:
                scatter = ax.scatter(x, table[y_name].values[ok], c=colour, s=14, cmap="viridis")
            else:
                ax.set_visible(False)
            if row == n - 1:
                ax.set_xlabel(f"{x_name} [{table[x_name].attrs.get('units', '')}]")
            if col == 0 and row > 0:
                ax.set_ylabel(f"{y_name} [{table[y_name].attrs.get('units', '')}]")
    if scatter is not None:
        figure.colorbar(scatter, ax=axes, shrink=0.6,
                        label=f"{response} [{table[response].attrs.get('units', '')}]")
    with atomic_output(path) as tmp:
        figure.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
