"""Model input graphs of structures: species, neighbour edges and bonds (Å).

A `StructureGraph` holds what the predictor sees of one structure: each atom's species
index, the atom-centred neighbour edges (centre i, neighbour j, lattice shift R, for
every |tau_j + R·cell - tau_i| < cutoff) and the bonds whose blocks are predicted
(every unordered pair within the bond cutoff, once, in the record schema's canonical
orientation). Vectors are computed in float64 here, so the network gets precise
displacements even for large cells.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from ase.neighborlist import primitive_neighbor_list

from mlh.errors import MLHError
from mlh.record.hamiltonian import canonical_pair_mask

__all__ = [
    "MIN_DISTANCE", "PAD_DISTANCE", "EdgesAndBonds", "StructureGraph", "neighbour_pairs", "build_graph",
    "check_min_distance",
]

MIN_DISTANCE = 0.5
"""Atoms closer than this (Å) are rejected as unphysical input."""

PAD_DISTANCE = 1000.0
"""Length (Å) of padding edge and bond vectors (along x); far beyond any cutoff."""


@dataclass(frozen=True, kw_only=True)
class EdgesAndBonds:
    """The edge and bond arrays of a model input graph (indices into the graph's atoms).

    The one declaration of these fields: a structure's graph, a partition slice and a
    padded training batch hold them.

    Attributes:
        edge_center, edge_neighbor: (E,) atom indices of the atom-centred edges.
        edge_vector: (E, 3) tau_neighbor + R·cell - tau_center (Å).
        bond_i, bond_j: (B,) atom indices of the predicted pair blocks (canonical).
        bond_shift: (B, 3) integer lattice shift R of atom j.
        bond_vector: (B, 3) tau_j + R·cell - tau_i (Å).
    """

    edge_center: np.ndarray
    edge_neighbor: np.ndarray
    edge_vector: np.ndarray
    bond_i: np.ndarray
    bond_j: np.ndarray
    bond_shift: np.ndarray
    bond_vector: np.ndarray

    @property
    def n_edges(self) -> int:
        return len(self.edge_center)

    @property
    def n_bonds(self) -> int:
        return len(self.bond_i)

    def edges_and_bonds(self) -> dict[str, np.ndarray]:
        """The seven edge and bond arrays by field name."""
        return {field.name: getattr(self, field.name) for field in fields(EdgesAndBonds)}


@dataclass(frozen=True, kw_only=True)
class StructureGraph(EdgesAndBonds):
    """Model input of one structure: species and the edges and bonds (`EdgesAndBonds`).

    Attributes:
        species: (N,) model species indices.
    """

    species: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.species)


def neighbour_pairs(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All ordered (i, j, R) with 0 < |tau_j + R·cell - tau_i| < cutoff (Å).

    Returns:
        i (E,), j (E,), integer shifts R (E, 3), float64 vectors (E, 3) in Å.
    """
    i, j, shift, vector = primitive_neighbor_list(
        "ijSD", np.asarray(pbc, bool), np.asarray(cell, float), np.asarray(positions, float), cutoff,
        self_interaction=False,
    )
    return i.astype(np.int32), j.astype(np.int32), shift.astype(np.int64), vector


def check_min_distance(vectors: np.ndarray, i: np.ndarray, j: np.ndarray, source: str) -> None:
    """MLHError naming the closest atom pair if any distance is below MIN_DISTANCE."""
    if len(vectors) == 0:
        return
    distance = np.linalg.norm(vectors, axis=1)
    worst = int(np.argmin(distance))
    if distance[worst] < MIN_DISTANCE:
        raise MLHError(
            f"{source}: atoms {i[worst]} and {j[worst]} are {distance[worst]:.3f} Å apart "
            f"(less than {MIN_DISTANCE} Å); the structure is unphysical"
        )


def build_graph(
    species: np.ndarray,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    atom_cutoff: float,
    bond_cutoff: float,
    source: str = "structure",
) -> StructureGraph:
    """Graph of a structure: edges within `atom_cutoff`, canonical bonds within `bond_cutoff` (Å).

    Raises:
        MLHError: atoms closer than MIN_DISTANCE.
    """
    positions = np.asarray(positions, float)
    i, j, shift, vector = neighbour_pairs(positions, cell, pbc, max(atom_cutoff, bond_cutoff))
    check_min_distance(vector, i, j, source)
    distance = np.linalg.norm(vector, axis=1)
    edge = distance < atom_cutoff
    bond = np.flatnonzero((distance < bond_cutoff) & canonical_pair_mask(i, j, shift))
    bond = bond[np.lexsort((*(shift[bond].T[::-1]), j[bond], i[bond]))]
    return StructureGraph(
        species=np.asarray(species, np.int32),
        edge_center=i[edge],
        edge_neighbor=j[edge],
        edge_vector=vector[edge],
        bond_i=i[bond],
        bond_j=j[bond],
        bond_shift=shift[bond],
        bond_vector=vector[bond],
    )
