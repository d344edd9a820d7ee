"""mlh.gpaw.overlap: S(R) blocks from GPAW's two-centre tables equal GPAW-made records' S."""

import numpy as np
import pytest
from ase import Atoms

from mlh.errors import MLHError
from mlh.gpaw.overlap import (
    OverlapBlocks,
    OverlapTables,
    gpaw_setups,
    overlap_blocks,
    overlap_pairs,
    pair_list,
    pair_reach,
)
from mlh.gpaw.reference import BLOCK_TOLERANCE, reference_record
from mlh.gpaw.settings import GPAWSettings
from mlh.record.hamiltonian import HamiltonianRecord
from tests.structures import STRUCTURES, water, wse2_primitive

pytestmark = pytest.mark.gpaw

ATOL = 1e-8


def pair_keys(i, j, shift) -> list[tuple]:
    return [(a, b, *s) for a, b, s in zip(i.tolist(), j.tolist(), shift.tolist())]


def as_record(atoms: Atoms, blocks: OverlapBlocks, ghost=None) -> HamiltonianRecord:
    """The blocks plugged into a record (validates canonical pairs and symmetric on-site)."""
    ghost = np.zeros(len(atoms), bool) if ghost is None else ghost
    return HamiltonianRecord(numbers=atoms.numbers, cell=atoms.cell.array, pbc=atoms.pbc,
                             ghost=ghost, **blocks.record_fields())


def pair_values(record: HamiltonianRecord, keys: list[tuple]) -> np.ndarray:
    """Concatenated S blocks of `record` for the pairs `keys`, in that order."""
    index = {key: p for p, key in
             enumerate(pair_keys(record.pair_i, record.pair_j, record.pair_shift))}
    return np.concatenate([record.pair_block(record.S_pair, index[k]).ravel() for k in keys])


def max_pair_S(record: HamiltonianRecord) -> np.ndarray:
    return np.maximum.reduceat(np.abs(record.S_pair), record.pair_value_offsets[:-1])


@pytest.mark.parametrize("name", ["water", "wse2", "silicon"])
def test_overlap_blocks_equal_gpaw_record(gpaw_records, name):
    """Molecule, periodic slab (self-images) and 3D crystal: same S to 1e-8 (seen: 1e-15)."""
    atoms, record = gpaw_records(name)
    settings = STRUCTURES[name][1]
    tables = OverlapTables(gpaw_setups(atoms, settings))
    blocks = overlap_blocks(atoms, settings, chunk_size=500, tables=tables)
    mine = as_record(atoms, blocks)
    np.testing.assert_allclose(mine.positions, record.positions, rtol=0, atol=1e-12)
    assert mine.basis == record.basis
    assert blocks.n_electrons == record.labels.n_electrons
    assert np.abs(mine.S_onsite - record.S_onsite).max() < ATOL
    for atom in range(mine.n_atoms):
        block = mine.onsite_block(mine.S_onsite, atom)
        assert np.array_equal(block, block.T)

    # SCF records keep a pair when S *or* H reaches 1e-9; S alone decides here.
    record_keys = pair_keys(record.pair_i, record.pair_j, record.pair_shift)
    by_S = [k for k, s in zip(record_keys, max_pair_S(record)) if s >= BLOCK_TOLERANCE]
    assert pair_keys(mine.pair_i, mine.pair_j, mine.pair_shift) == by_S
    assert np.abs(pair_values(mine, by_S) - pair_values(record, by_S)).max() < ATOL

    # Without dropping, every record pair is there with the record's S.
    everything = as_record(atoms, overlap_blocks(atoms, settings, tolerance=0, tables=tables))
    assert set(record_keys) <= set(pair_keys(everything.pair_i, everything.pair_j,
                                             everything.pair_shift))
    assert np.abs(pair_values(everything, record_keys) - record.S_pair).max() < ATOL
    if name == "wse2":
        assert np.any(mine.pair_i == mine.pair_j), "primitive cell has self-images"


@pytest.mark.parametrize("name", ["wse2", "ghost water"])
def test_same_pairs_as_overlap_only_record(name):
    """Overlap-only records drop pairs by S alone: identical pair sets; ghost setups work."""
    if name == "wse2":
        atoms, settings = wse2_primitive(), GPAWSettings(setups={"W": "6"}, task="overlap")
        ghost = None
    else:
        atoms, settings = water(), GPAWSettings(task="overlap")
        ghost = np.array([False, True, False])
        atoms.arrays["ghost"] = ghost
    record = reference_record(atoms, settings)
    mine = as_record(atoms, overlap_blocks(atoms, settings), ghost)
    np.testing.assert_array_equal(mine.pair_i, record.pair_i)
    np.testing.assert_array_equal(mine.pair_j, record.pair_j)
    np.testing.assert_array_equal(mine.pair_shift, record.pair_shift)
    assert mine.basis == record.basis
    assert np.abs(mine.S_pair - record.S_pair).max() < ATOL
    assert np.abs(mine.S_onsite - record.S_onsite).max() < ATOL


def test_chunk_size_and_pair_list():
    atoms, settings = wse2_primitive(), STRUCTURES["wse2"][1]
    tables = OverlapTables(gpaw_setups(atoms, settings))
    small = overlap_blocks(atoms, settings, chunk_size=7, tables=tables, tolerance=0)
    large = overlap_blocks(atoms, settings, tables=tables, tolerance=0)
    np.testing.assert_array_equal(small.pair_shift, large.pair_shift)
    assert np.abs(small.S_pair - large.S_pair).max() < 1e-14
    assert np.abs(small.S_onsite - large.S_onsite).max() < 1e-14

    # The pair list without S is the undropped pair set; a shorter reach gives fewer pairs.
    i, j, shift = overlap_pairs(atoms, settings)
    assert pair_keys(i, j, shift) == pair_keys(large.pair_i, large.pair_j, large.pair_shift)
    reach = pair_reach(tables.setups, atoms.numbers)
    assert len(pair_list(atoms, 0.5 * reach)[0]) < len(i)


def test_unknown_element_raises():
    with pytest.raises(MLHError):
        overlap_blocks(Atoms("Og", cell=[5, 5, 5]), GPAWSettings())
