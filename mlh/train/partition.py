"""Augmented partitioning of a large periodic record into slices (seed 004, section 3.3).

A record is cut into `count` slices along one periodic cell axis a: slice k owns the
atoms whose fractional coordinate along a, wrapped into [0, 1), lies in
[k / count, (k + 1) / count). The slice keeps the periodicity of the two other axes
and is augmented with virtual atoms (periodic images along a included) so that every
quantity it labels has exactly the inputs it has in the full structure (Algorithm 1
of seed 004, with the receptive field of this model):

- labelled are the on-site blocks of the slice's atoms and the blocks of the pairs
  (i, j, R) within the bond cutoff whose first atom i (the record's canonical
  orientation) is in the slice, so every block of the record is labelled in exactly
  one slice;
- a pair block is predicted from the atom-centred descriptors of i and of j's image
  (which may lie outside the slice) and the pair vector; a descriptor needs the
  species and positions of the atom's neighbours within the atom cutoff. With s
  message-passing steps the neighbours' descriptors enter too: atoms up to s more
  neighbourhoods out get their edges as well (the receptive field grows by one atom
  cutoff per step).

Edges are kept only for atoms whose descriptor is needed and bonds only for labelled
pairs. Edge and bond vectors are copied from the full structure's neighbour list, so
the model sees the same inputs (its outputs agree to float32 rounding). The slice
thickness is measured perpendicular to the planes of the two other cell vectors.
Lengths in Å, energies in eV.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mlh.errors import MLHError
from mlh.model.config import ModelConfig, PartitionConfig
from mlh.model.graph import EdgesAndBonds, StructureGraph, build_graph
from mlh.model.irreps import IrrepsLayout, blocks_to_irreps
from mlh.model.layouts import OutputLayouts
from mlh.model.targets import match_pairs
from mlh.record.basis import Basis, check_model_basis
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.train.data import Sample

__all__ = ["Partition", "slice_height", "slice_count", "partition_record", "partition_sample"]


@dataclass(frozen=True, eq=False, kw_only=True)
class Partition(EdgesAndBonds):
    """One augmented slice of a record.

    Atoms 0..n_labelled-1 are the slice's own (labelled) atoms in record order; the
    others are images whose descriptors or neighbourhoods the labelled blocks need.

    Attributes:
        numbers, ghost: (N,) atomic numbers and ghost flags.
        image_atom: (N,) index of each atom in the record.
        image_shift: (N,) lattice shift of each image along `axis`: its position is
            tau[image_atom] + image_shift * cell[axis] (Å).
        cell: (3, 3) the record's cell (Å); periodic along the axes other than `axis`.
        n_labelled: number of labelled atoms.
        edges and bonds (`EdgesAndBonds`): the edges of every atom whose descriptor is
            needed, and the labelled pairs with their lattice shift R in the record.
        H_onsite: row-major on-site H blocks of the labelled atoms, concatenated (eV).
        H_pair: row-major H blocks of the labelled pairs, concatenated; zero for pairs
            the record does not store (eV).
        basis: the record's basis.
        axis, index, count: slice `index` of `count` along cell axis `axis`.
        atom_cutoff, bond_cutoff: the model cutoffs the slice was made for (Å).
        message_passing_steps: the model's message-passing steps it was made for.
        source: the record it comes from.
    """

    numbers: np.ndarray
    ghost: np.ndarray
    image_atom: np.ndarray
    image_shift: np.ndarray
    cell: np.ndarray
    n_labelled: int
    H_onsite: np.ndarray
    H_pair: np.ndarray
    basis: Basis
    axis: int
    index: int
    count: int
    atom_cutoff: float
    bond_cutoff: float
    message_passing_steps: int
    source: str

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    @property
    def thickness(self) -> float:
        """Slice thickness (Å)."""
        return slice_height(self.cell, self.axis) / self.count


def slice_height(cell: np.ndarray, axis: int) -> float:
    """Distance (Å) between the lattice planes spanned by the cell vectors other than `axis`."""
    others = np.delete(np.asarray(cell, float), axis, axis=0)
    return float(abs(np.linalg.det(cell)) / np.linalg.norm(np.cross(*others)))


def slice_count(cell: np.ndarray, config: PartitionConfig) -> int:
    """Number of slices: `config.count`, or as many slices at least `config.thickness` thick (>= 1)."""
    if config.count is not None:
        return config.count
    return max(1, int(slice_height(cell, config.axis) // config.thickness))


def _check(record: HamiltonianRecord, config: PartitionConfig, source: str) -> None:
    if not record.has_hamiltonian:
        raise MLHError(f"{source}: record has no Hamiltonian (overlap-only); its slices would have no labels")
    if record.n_spins != 1:
        raise MLHError(f"{source}: spin-polarised records are not supported by the predictor")
    if not record.pbc[config.axis]:
        raise MLHError(
            f"{source}: cell axis {config.axis} is not periodic (pbc {record.pbc.astype(int).tolist()}); "
            "slices are cut along a periodic axis"
        )


class _Edges:
    """The full structure's edges grouped by centre atom, with their lattice shift along the cut axis.

    An image atom (atom a shifted by n cell vectors along the axis) has the code n * N + a.
    """

    def __init__(self, graph: StructureGraph, positions: np.ndarray, cell: np.ndarray, axis: int):
        n_atoms = graph.n_atoms
        self.order = np.argsort(graph.edge_center, kind="stable")
        self.starts = np.searchsorted(graph.edge_center[self.order], np.arange(n_atoms + 1))
        # vector = tau_j + R·cell - tau_i, so R along the axis is recovered exactly by rounding
        offset = graph.edge_vector - positions[graph.edge_neighbor] + positions[graph.edge_center]
        self.shift = np.rint(offset @ np.linalg.inv(cell)[:, axis]).astype(np.int64)
        self.neighbor = graph.edge_neighbor.astype(np.int64)
        self.n_atoms = n_atoms

    def of(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edges of the image atoms `codes`: edge indices, centre codes and neighbour codes.

        Edges come grouped by centre, in the full structure's order within each centre.
        """
        atom, image = codes % self.n_atoms, codes // self.n_atoms
        first, counts = self.starts[atom], self.starts[atom + 1] - self.starts[atom]
        owner = np.repeat(np.arange(len(codes)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        edges = self.order[first[owner] + within]
        neighbor = (image[owner] + self.shift[edges]) * self.n_atoms + self.neighbor[edges]
        return edges, codes[owner], neighbor


def _augment(labelled: np.ndarray, partners: np.ndarray, edges: _Edges, steps: int):
    """Image atoms of a slice and the edges of those whose descriptors are needed.

    Args:
        labelled: codes of the slice's atoms; partners: codes of its pairs' second atoms.
        edges: the full structure's edges.
        steps: message-passing steps (each adds the edges of one more neighbourhood).

    Returns:
        Atom codes (labelled first) and (edge indices, centre codes, neighbour codes).
    """
    centres = np.union1d(labelled, partners)
    frontier = centres
    for _ in range(steps):
        frontier = np.setdiff1d(edges.of(frontier)[2], centres)
        centres = np.union1d(centres, frontier)
    edge_index, centre, neighbour = edges.of(centres)
    others = np.setdiff1d(np.union1d(centres, neighbour), labelled)
    return np.concatenate([labelled, others]), (edge_index, centre, neighbour)


def _index_of(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Position in `codes` (distinct) of each of `query`."""
    sorter = np.argsort(codes)
    return sorter[np.searchsorted(codes, query, sorter=sorter)].astype(np.int32)


def _flat_blocks(values: np.ndarray, offsets: np.ndarray, items: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenated blocks `items` of a flat block array (offsets (n+1,)); item -1 gives zeros of `sizes`."""
    parts = [values[offsets[k] : offsets[k + 1]] if k >= 0 else np.zeros(size) for k, size in zip(items, sizes)]
    return np.concatenate(parts) if parts else np.zeros(0)


def partition_record(
    record: HamiltonianRecord, config: PartitionConfig, model: ModelConfig, source: str = "record"
) -> list[Partition]:
    """Augmented slices of a periodic record for a model's cutoffs and message-passing steps.

    Raises:
        MLHError: an overlap-only or spin-polarised record, a non-periodic axis, atoms
            closer than 0.5 Å, or a slice without atoms (slices too thin).
    """
    _check(record, config, source)
    axis = config.axis
    count = slice_count(record.cell, config)
    atom_cutoff = model.atom_centered.radial_basis.cutoff
    bond_cutoff = model.bond_centered.cutoff
    steps = model.atom_centered.message_passing.steps
    graph = build_graph(record.numbers, record.positions, record.cell, record.pbc, atom_cutoff, bond_cutoff, source)
    edges = _Edges(graph, record.positions, record.cell, axis)
    n_atoms = record.n_atoms

    fraction = record.positions @ np.linalg.inv(record.cell)[:, axis]
    wrap = np.floor(fraction).astype(np.int64)
    slice_of = np.minimum(((fraction - wrap) * count).astype(np.int64), count - 1)
    empty = sorted(set(range(count)) - set(slice_of.tolist()))
    if empty:
        height = slice_height(record.cell, axis)
        wrapped = np.sort(fraction - wrap)
        gap = height * np.diff(np.concatenate([wrapped, wrapped[:1] + 1.0])).max()
        raise MLHError(
            f"{source}: slice {empty[0]} of {count} ({height / count:.3g} Å thick along axis {axis}) holds "
            f"no atoms (the widest atom-free layer is {gap:.3g} Å); use thicker or fewer slices"
        )

    counts = record.orbital_counts
    onsite_offsets = record.onsite_value_offsets
    pair_index = match_pairs(record, graph)
    bond_sizes = counts[graph.bond_i] * counts[graph.bond_j]
    partitions = []
    for index in range(count):
        labelled = np.flatnonzero(slice_of == index)
        bonds = np.flatnonzero(slice_of[graph.bond_i] == index)
        # labelled atoms are the images inside the cell (shift -wrap); pair partners follow R
        first = -wrap[graph.bond_i[bonds]] * n_atoms + graph.bond_i[bonds]
        second = (-wrap[graph.bond_i[bonds]] + graph.bond_shift[bonds, axis]) * n_atoms + graph.bond_j[bonds]
        codes, (edge_index, edge_centre, edge_neighbour) = _augment(
            -wrap[labelled] * n_atoms + labelled, second, edges, steps
        )
        atom = codes % n_atoms
        partitions.append(
            Partition(
                numbers=record.numbers[atom],
                ghost=record.ghost[atom],
                image_atom=atom,
                image_shift=codes // n_atoms,
                cell=record.cell,
                n_labelled=len(labelled),
                edge_center=_index_of(codes, edge_centre),
                edge_neighbor=_index_of(codes, edge_neighbour),
                edge_vector=graph.edge_vector[edge_index],
                bond_i=_index_of(codes, first),
                bond_j=_index_of(codes, second),
                bond_shift=graph.bond_shift[bonds],
                bond_vector=graph.bond_vector[bonds],
                H_onsite=_flat_blocks(record.H_onsite[0], onsite_offsets, labelled, counts[labelled] ** 2),
                H_pair=_flat_blocks(record.H_pair[0], record.pair_value_offsets, pair_index[bonds], bond_sizes[bonds]),
                basis=record.basis,
                axis=axis,
                index=index,
                count=count,
                atom_cutoff=atom_cutoff,
                bond_cutoff=bond_cutoff,
                message_passing_steps=steps,
                source=source,
            )
        )
    return partitions


def _irreps(
    values: np.ndarray,
    sizes: np.ndarray,
    species_i: np.ndarray,
    species_j: np.ndarray,
    layout: Callable[[int, int], IrrepsLayout],
    shape: tuple[int, int, int],
) -> np.ndarray:
    """Irreps (n, *shape) of concatenated row-major blocks of shapes (n_i, n_j), grouped by species pair."""
    out = np.zeros((len(sizes), *shape))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for a, b in sorted(set(zip(species_i.tolist(), species_j.tolist()))):
        items = np.flatnonzero((species_i == a) & (species_j == b))
        target = layout(a, b)
        blocks = np.stack([values[offsets[k] : offsets[k + 1]] for k in items])
        out[items] = blocks_to_irreps(blocks.reshape(len(items), *target.block_shape), target)
    return out


def partition_sample(partition: Partition, layouts: OutputLayouts, model: ModelConfig, name: str) -> Sample:
    """Training sample of a slice: its graph, and irreps targets of its labelled atoms and pairs (eV).

    Raises:
        MLHError: a slice made for other cutoffs or message-passing steps than the
            model's, a species the model lacks, or a basis differing from the model's.
    """
    made = (partition.atom_cutoff, partition.bond_cutoff, partition.message_passing_steps)
    wanted = (
        model.atom_centered.radial_basis.cutoff,
        model.bond_centered.cutoff,
        model.atom_centered.message_passing.steps,
    )
    if not np.allclose(made, wanted, rtol=0, atol=1e-9):
        raise MLHError(
            f"{name}: slice made for atom/bond cutoffs {made[0]}/{made[1]} Å and {made[2]} message-passing "
            f"steps, the model has {wanted[0]}/{wanted[1]} Å and {wanted[2]}; partition the record again"
        )
    species = layouts.species_index(partition.numbers, name, partition.ghost)
    check_model_basis(partition.basis, layouts.basis, partition.numbers, name)
    graph = StructureGraph(species=species, **partition.edges_and_bonds())
    n_orbitals = np.array([layouts.n_orbitals(a) for a in range(layouts.n_species)])[species]
    labelled = species[: partition.n_labelled]
    onsite = np.zeros((partition.n_atoms, *layouts.onsite_shape))
    onsite[: partition.n_labelled] = _irreps(
        partition.H_onsite, n_orbitals[: partition.n_labelled] ** 2, labelled, labelled,
        lambda a, _: layouts.onsite_layout(a), layouts.onsite_shape,
    )
    si, sj = species[partition.bond_i], species[partition.bond_j]
    offsite = _irreps(
        partition.H_pair, n_orbitals[partition.bond_i] * n_orbitals[partition.bond_j], si, sj,
        layouts.pair_layout, layouts.offsite_shape,
    )
    return Sample(name, graph, onsite.astype(np.float32), offsite.astype(np.float32), partition.n_labelled)
