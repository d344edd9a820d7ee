"""Training samples from records, and padded batches with bounded shapes.

A `Sample` is one structure's graph with its target irreps (eV); in a partition of a
large structure (`mlh.train.partition`) only the first atoms carry on-site targets, the
others are there for their descriptors and neighbourhoods. `collate` joins samples
into one padded graph (`Batch`): atom arrays padded to a multiple of `atoms_multiple`
(with at least one padding atom), edge and bond arrays to a multiple of
`edges_multiple`. Padding edges and bonds join the last padding atom to itself with
a vector far beyond every cutoff, so they contribute exactly nothing, and the masks
keep them (and unlabelled atoms) out of the loss. For the gauge-invariant loss
(`LossConfig.gauge_invariant`) and the per-atom potential (`ModelConfig.atom_potential`)
samples also carry S in the same irreps layout; batches give the structure of each atom. Padded shapes come from a small set,
which bounds the number of compilations. `stack_batches` pads batches to one shape and
stacks them, one per device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import jax
import numpy as np

from mlh.model.graph import StructureGraph, build_graph
from mlh.model.kernel import FAR_VECTOR
from mlh.model.layouts import OutputLayouts
from mlh.model.targets import learned_record, onsite_targets, pair_targets
from mlh.record.basis import check_model_basis
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import read_record

__all__ = [
    "Sample", "Batch", "make_sample", "load_samples", "collate",
    "stack_batches",
]


@dataclass(frozen=True)
class Sample:
    """One structure: its graph and targets (float32 irreps, eV).

    Attributes:
        name: where the sample comes from.
        graph: the model input.
        onsite: (N, 2, L, F) on-site targets (zero for unlabelled atoms).
        offsite: (B, 2, L, F) pair targets of every bond of the graph.
        n_labelled: atoms 0..n_labelled-1 carry on-site targets; None: every atom.
        onsite_overlap, offsite_overlap: S in the layouts of onsite and offsite, or None.
    """

    name: str
    graph: StructureGraph
    onsite: np.ndarray
    offsite: np.ndarray
    n_labelled: int | None = None
    onsite_overlap: np.ndarray | None = None
    offsite_overlap: np.ndarray | None = None

    @property
    def labelled_atoms(self) -> int:
        """Number of atoms with on-site targets (the first ones)."""
        return self.graph.n_atoms if self.n_labelled is None else self.n_labelled


@jax.tree_util.register_dataclass
@dataclass(frozen=True, kw_only=True)
class Batch(StructureGraph):
    """A padded graph of one or more structures (a jax pytree): the graph's species,
    edges and bonds (`StructureGraph`; bond_shift int32), masks and targets.

    Shapes: atoms Na, edges Ne, bonds Nb (all padded); irreps (2, L, F). `atom_structure`
    (Na,) numbers the structures of the batch (padding atoms get their count);
    `onsite_overlap` (Na, 2, L, F) and `offsite_overlap` (Nb, 2, L, F) hold S where the
    samples carry it, else None.
    """

    atom_mask: np.ndarray
    bond_mask: np.ndarray
    onsite_target: np.ndarray
    offsite_target: np.ndarray
    atom_structure: np.ndarray
    onsite_overlap: np.ndarray | None = None
    offsite_overlap: np.ndarray | None = None


def make_sample(
    record: HamiltonianRecord,
    layouts: OutputLayouts,
    atom_cutoff: float,
    bond_cutoff: float,
    name: str = "record",
    overlap: bool = False,
) -> Sample:
    """Graph and targets of one record (with S's irreps if `overlap`); MLHError for unknown
    species, bad basis or geometry."""
    species = layouts.species_index(record.numbers, name, record.ghost)
    check_model_basis(record.basis, layouts.basis, record.numbers, name)
    graph = build_graph(species, record.positions, record.cell, record.pbc, atom_cutoff, bond_cutoff, name)
    overlaps = {}
    if overlap:  # S placed where H is, so that the same layouts give its irreps
        as_h = replace(record, H_onsite=record.S_onsite[None], H_pair=record.S_pair[None])
        overlaps = {
            "onsite_overlap": onsite_targets(as_h, species, layouts, name).astype(np.float32),
            "offsite_overlap": pair_targets(as_h, graph, layouts, name).astype(np.float32),
        }
    return Sample(
        name=name,
        graph=graph,
        onsite=onsite_targets(record, species, layouts, name).astype(np.float32),
        offsite=pair_targets(record, graph, layouts, name).astype(np.float32),
        **overlaps,
    )


def load_samples(
    files: Sequence[Path], layouts: OutputLayouts, atom_cutoff: float, bond_cutoff: float,
    target: str = "hamiltonian", overlap: bool = False,
) -> list[Sample]:
    """Samples of record files (read one at a time) for a model of `target`
    (mlh.model.targets.learned_record), with S's irreps if `overlap`."""
    return [
        make_sample(learned_record(read_record(path), target, str(path)), layouts, atom_cutoff,
                    bond_cutoff, str(path), overlap)
        for path in files
    ]


def _padded(n: int, multiple: int, extra: int = 0) -> int:
    return -(-(n + extra) // multiple) * multiple


def collate(
    samples: Sequence[Sample],
    atoms_multiple: int,
    edges_multiple: int,
    bond_fraction: float = 1.0,
    rng: np.random.Generator | None = None,
) -> Batch:
    """One padded Batch of `samples`; with bond_fraction < 1 a random subset of bonds is kept."""
    species, centers, neighbors, edge_vectors, labelled = [], [], [], [], []
    bond_i, bond_j, bond_shifts, bond_vectors, onsite, offsite = [], [], [], [], [], []
    structure, onsite_overlap, offsite_overlap = [], [], []
    offset = 0
    for number, sample in enumerate(samples):
        graph = sample.graph
        keep = np.arange(graph.n_bonds)
        if bond_fraction < 1.0:
            n_keep = max(1, int(round(bond_fraction * graph.n_bonds)))
            keep = np.sort(rng.choice(graph.n_bonds, size=n_keep, replace=False))
        species.append(graph.species)
        labelled.append(np.arange(graph.n_atoms) < sample.labelled_atoms)
        centers.append(graph.edge_center + offset)
        neighbors.append(graph.edge_neighbor + offset)
        edge_vectors.append(graph.edge_vector)
        bond_i.append(graph.bond_i[keep] + offset)
        bond_j.append(graph.bond_j[keep] + offset)
        bond_shifts.append(graph.bond_shift[keep])
        bond_vectors.append(graph.bond_vector[keep])
        onsite.append(sample.onsite)
        offsite.append(sample.offsite[keep])
        structure.append(np.full(graph.n_atoms, number))
        if sample.onsite_overlap is not None:
            onsite_overlap.append(sample.onsite_overlap)
            offsite_overlap.append(sample.offsite_overlap[keep])
        offset += graph.n_atoms
    n_atoms = offset
    n_edges = sum(map(len, centers))
    n_bonds = sum(map(len, bond_i))
    atoms_pad = _padded(n_atoms, atoms_multiple, extra=1)
    edges_pad = _padded(n_edges, edges_multiple)
    bonds_pad = _padded(n_bonds, edges_multiple)
    dummy = atoms_pad - 1
    far = np.array(FAR_VECTOR)

    def pad(parts, total, fill):
        array = np.concatenate(parts) if parts else np.zeros((0, *np.shape(fill)))
        padding = np.broadcast_to(fill, (total - len(array), *np.shape(fill)))
        return np.concatenate([array, padding.astype(array.dtype)])

    irreps_on, irreps_off = samples[0].onsite.shape[1:], samples[0].offsite.shape[1:]
    with_overlap = len(onsite_overlap) == len(samples) > 0
    return Batch(
        species=pad(species, atoms_pad, np.int32(0)).astype(np.int32),
        edge_center=pad(centers, edges_pad, np.int32(dummy)).astype(np.int32),
        edge_neighbor=pad(neighbors, edges_pad, np.int32(dummy)).astype(np.int32),
        edge_vector=pad(edge_vectors, edges_pad, far).astype(np.float32),
        bond_i=pad(bond_i, bonds_pad, np.int32(dummy)).astype(np.int32),
        bond_j=pad(bond_j, bonds_pad, np.int32(dummy)).astype(np.int32),
        bond_shift=pad(bond_shifts, bonds_pad, np.zeros(3, np.int32)).astype(np.int32),
        bond_vector=pad(bond_vectors, bonds_pad, far).astype(np.float32),
        atom_mask=pad(labelled, atoms_pad, False).astype(np.float32),
        bond_mask=(np.arange(bonds_pad) < n_bonds).astype(np.float32),
        onsite_target=pad(onsite, atoms_pad, np.zeros(irreps_on, np.float32)),
        offsite_target=pad(offsite, bonds_pad, np.zeros(irreps_off, np.float32)),
        atom_structure=pad(structure, atoms_pad, np.int32(len(samples))).astype(np.int32),
        onsite_overlap=pad(onsite_overlap, atoms_pad, np.zeros(irreps_on, np.float32))
        if with_overlap else None,
        offsite_overlap=pad(offsite_overlap, bonds_pad, np.zeros(irreps_off, np.float32))
        if with_overlap else None,
    )


def _pad_batch(batch: Batch, n_atoms: int, n_edges: int, n_bonds: int) -> Batch:
    """`batch` padded to n_atoms atoms, n_edges edges and n_bonds bonds (all at least its own).

    New edges and bonds join the last (padding) atom to itself far beyond every cutoff.
    """
    dummy = n_atoms - 1
    far = np.float32(FAR_VECTOR)

    def pad(array, total, fill):
        if array is None:
            return None
        padding = np.broadcast_to(np.asarray(fill, array.dtype), (total - len(array), *array.shape[1:]))
        return np.concatenate([array, padding])

    return Batch(
        species=pad(batch.species, n_atoms, 0),
        edge_center=pad(batch.edge_center, n_edges, dummy),
        edge_neighbor=pad(batch.edge_neighbor, n_edges, dummy),
        edge_vector=pad(batch.edge_vector, n_edges, far),
        bond_i=pad(batch.bond_i, n_bonds, dummy),
        bond_j=pad(batch.bond_j, n_bonds, dummy),
        bond_shift=pad(batch.bond_shift, n_bonds, 0),
        bond_vector=pad(batch.bond_vector, n_bonds, far),
        atom_mask=pad(batch.atom_mask, n_atoms, 0),
        bond_mask=pad(batch.bond_mask, n_bonds, 0),
        onsite_target=pad(batch.onsite_target, n_atoms, 0),
        offsite_target=pad(batch.offsite_target, n_bonds, 0),
        atom_structure=pad(batch.atom_structure, n_atoms, batch.atom_structure[-1]),
        onsite_overlap=pad(batch.onsite_overlap, n_atoms, 0),
        offsite_overlap=pad(batch.offsite_overlap, n_bonds, 0),
    )


def stack_batches(batches: Sequence[Batch]) -> Batch:
    """Batches padded to their largest atom, edge and bond counts and stacked (leading axis)."""
    n_atoms = max(len(b.species) for b in batches)
    n_edges = max(len(b.edge_center) for b in batches)
    n_bonds = max(len(b.bond_i) for b in batches)
    padded = [_pad_batch(b, n_atoms, n_edges, n_bonds) for b in batches]
    return Batch(**{
        field.name: None if getattr(padded[0], field.name) is None
        else np.stack([getattr(b, field.name) for b in padded])
        for field in fields(Batch)
    })
