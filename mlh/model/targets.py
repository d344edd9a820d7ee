"""Training targets: a record's H blocks (or their correction to H0) as irreps in the
model's padded layouts (eV), and the way back from predicted irreps to record blocks.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mlh.errors import MLHError
from mlh.model.graph import StructureGraph
from mlh.model.irreps import blocks_to_irreps, irreps_to_blocks
from mlh.model.layouts import OutputLayouts
from mlh.record.hamiltonian import HamiltonianRecord

__all__ = ["learned_record", "onsite_targets", "pair_targets", "match_pairs", "onsite_blocks", "pair_blocks"]


def _check_record(record: HamiltonianRecord, source: str) -> None:
    if not record.has_hamiltonian:
        raise MLHError(f"{source}: record has no Hamiltonian (overlap-only); it cannot be a target")
    if record.n_spins != 1:
        raise MLHError(f"{source}: spin-polarised records are not supported by the predictor")


def _groups(species_i: np.ndarray, species_j: np.ndarray):
    """Yield (a, b, indices) for every ordered species pair present."""
    for a, b in sorted(set(zip(species_i.tolist(), species_j.tolist()))):
        yield a, b, np.flatnonzero((species_i == a) & (species_j == b))


def learned_record(record: HamiltonianRecord, target: str, source: str) -> HamiltonianRecord:
    """The record with H replaced by what a model of `target` learns (eV): H itself
    ("hamiltonian"), or dH = H - H0 ("correction").

    Raises:
        MLHError: a correction target for a record without H or H0.
    """
    if target == "hamiltonian":
        return record
    if target != "correction":
        raise MLHError(f"unknown model target {target!r}")
    if not (record.has_hamiltonian and record.has_baseline):
        raise MLHError(f"{source}: the model learns corrections to the zeroth-step H0, but the "
                       f"record has no {'H0' if record.has_hamiltonian else 'H'} (make records "
                       f"with mlh generate --baseline)")
    return replace(record, H_pair=record.H_pair - record.H0_pair,
                   H_onsite=record.H_onsite - record.H0_onsite)


def onsite_targets(
    record: HamiltonianRecord, species: np.ndarray, layouts: OutputLayouts, source: str = "record"
) -> np.ndarray:
    """On-site irreps (N, 2, L, F) of the record's H (eV); species: (N,) model indices."""
    _check_record(record, source)
    out = np.zeros((record.n_atoms, *layouts.onsite_shape))
    for a, _, atoms in _groups(species, species):
        blocks = np.stack([record.onsite_block(record.H_onsite[0], int(i)) for i in atoms])
        out[atoms] = blocks_to_irreps(blocks, layouts.onsite_layout(a))
    return out


def match_pairs(record: HamiltonianRecord, graph: StructureGraph) -> np.ndarray:
    """Index of each graph bond among the record's stored pairs, -1 where the record has none."""
    def keys(i, j, shift):
        return [(int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, shift)]

    lookup = {key: n for n, key in enumerate(keys(record.pair_i, record.pair_j, record.pair_shift))}
    return np.array(
        [lookup.get(key, -1) for key in keys(graph.bond_i, graph.bond_j, graph.bond_shift)], dtype=np.int64
    )


def pair_targets(
    record: HamiltonianRecord, graph: StructureGraph, layouts: OutputLayouts, source: str = "record"
) -> np.ndarray:
    """Pair irreps (B, 2, L, F) of the graph's bonds (eV); bonds the record lacks are zero."""
    _check_record(record, source)
    index = match_pairs(record, graph)
    out = np.zeros((graph.n_bonds, *layouts.offsite_shape))
    species = graph.species
    for a, b, bonds in _groups(species[graph.bond_i], species[graph.bond_j]):
        bonds = bonds[index[bonds] >= 0]
        if len(bonds):
            blocks = np.stack([record.pair_block(record.H_pair[0], int(p)) for p in index[bonds]])
            out[bonds] = blocks_to_irreps(blocks, layouts.pair_layout(a, b))
    return out


def onsite_blocks(irreps: np.ndarray, species: np.ndarray, layouts: OutputLayouts) -> list[np.ndarray]:
    """Row-major flattened on-site blocks (eV) of irreps (N, 2, L, F), one per atom.

    Blocks are symmetrised as (B + B^T)/2, which makes them exactly symmetric (the irreps
    of a symmetric block give one only up to rounding).
    """
    blocks: list[np.ndarray] = [np.empty(0)] * len(species)
    for a, _, atoms in _groups(species, species):
        for atom, block in zip(atoms, irreps_to_blocks(irreps[atoms], layouts.onsite_layout(a))):
            blocks[atom] = (0.5 * (block + block.T)).ravel()
    return blocks


def pair_blocks(
    irreps: np.ndarray, species_i: np.ndarray, species_j: np.ndarray, layouts: OutputLayouts
) -> list[np.ndarray]:
    """Row-major flattened pair blocks (eV) of irreps (B, 2, L, F), one per pair."""
    blocks: list[np.ndarray] = [np.empty(0)] * len(species_i)
    for a, b, pairs in _groups(species_i, species_j):
        for pair, block in zip(pairs, irreps_to_blocks(irreps[pairs], layouts.pair_layout(a, b))):
            blocks[pair] = block.ravel()
    return blocks
