"""Dataset analysis (`mlh analyze`): species (with ghosts), basis, graph sizes, scale-shift statistics.

The statistics are written beside the data as `scale_shift.nc`; `mlh train` uses that
file when it is present for the model's species, and fits it itself otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from mlh.errors import MLHError
from mlh.model.config import ModelConfig
from mlh.model.layouts import OutputLayouts
from mlh.model.scale_shift import ScaleShift, fit_scale_shift
from mlh.record.basis import Basis, same_species_basis
from mlh.record.io import read_record
from mlh.train.data import Sample, load_samples

__all__ = ["SCALE_SHIFT_FILE", "dataset_layouts", "sample_statistics", "fit_from_samples", "analyze_files"]

SCALE_SHIFT_FILE = "scale_shift.nc"


def dataset_layouts(files: Sequence[Path]) -> OutputLayouts:
    """Layouts of every species of the records: the union of their elements (one basis per
    element) and a ghost species for each element with ghost atoms; MLHError naming a
    file whose basis conflicts."""
    species: dict[int, object] = {}
    ghost_numbers: set[int] = set()
    name = None
    for path in files:
        record = read_record(path)
        name = name or record.basis.name
        ghost_numbers.update(record.numbers[record.ghost].tolist())
        for entry in record.basis.species:
            known = species.setdefault(entry.number, entry)
            if not same_species_basis(known, entry):
                raise MLHError(f"{path}: the basis of species {entry.number} differs from other records")
    basis = Basis(name=name or "", species=tuple(species[z] for z in sorted(species)))
    return OutputLayouts.from_basis(basis, ghost_numbers=tuple(sorted(ghost_numbers)))


def _statistics_input(sample: Sample):
    graph = sample.graph
    species = graph.species
    bond_species = np.stack([species[graph.bond_i], species[graph.bond_j]], axis=1)
    distance = np.linalg.norm(graph.bond_vector, axis=1)
    labelled = sample.labelled_atoms
    return species[:labelled], sample.onsite[:labelled], bond_species, distance, sample.offsite


def fit_from_samples(samples: Sequence[Sample], layouts: OutputLayouts, bond_cutoff: float) -> ScaleShift:
    """Scale-shift tables fitted on samples (float64 statistics of float32 targets)."""
    return fit_scale_shift(map(_statistics_input, samples), layouts, bond_cutoff)


def sample_statistics(samples: Sequence[Sample]) -> xr.Dataset:
    """Per-structure atoms, edges and bonds, for choosing pad multiples and cutoffs."""
    return xr.Dataset(
        {
            "n_atoms": ("structure", [s.graph.n_atoms for s in samples]),
            "n_edges": ("structure", [s.graph.n_edges for s in samples]),
            "n_bonds": ("structure", [s.graph.n_bonds for s in samples]),
        },
        coords={"structure": [s.name for s in samples]},
    )


def analyze_files(
    files: Sequence[Path], model: ModelConfig
) -> tuple[OutputLayouts, ScaleShift, xr.Dataset]:
    """Layouts, scale-shift tables and size statistics of records, for the model's cutoffs
    and of the target it learns (H, or dH = H - H0)."""
    layouts = dataset_layouts(files)
    atom_cutoff = model.atom_centered.radial_basis.cutoff
    bond_cutoff = model.bond_centered.cutoff
    samples = load_samples(files, layouts, atom_cutoff, bond_cutoff, model.target)
    stats = fit_from_samples(samples, layouts, bond_cutoff)
    return layouts, stats, sample_statistics(samples)
