"""Symmetry properties of the bundled trained WSe2 model (examples/models/wse2_vacancies)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from mlh.gpaw.structures import wse2_with_vacancies
from mlh.inference.prediction import InferenceOptions, predict_irreps
from mlh.model.graph import build_graph
from mlh.model.irreps import wigner_d_orbitals
from mlh.model.predictor import Predictor
from mlh.model.targets import onsite_blocks, pair_blocks
from tests.structures import WSE2_MODEL as MODEL

OPTIONS = InferenceOptions(atom_chunk=64, bond_chunk=1024)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(MODEL)


def _blocks(predictor, atoms, options=OPTIONS):
    layouts = predictor.layouts
    species = layouts.species_index(atoms.numbers)
    graph = build_graph(
        species, atoms.positions, atoms.cell.array, atoms.pbc, predictor.atom_cutoff, predictor.bond_cutoff
    )
    onsite, offsite, _ = predict_irreps(predictor, graph, options)
    pairs = pair_blocks(offsite, species[graph.bond_i], species[graph.bond_j], layouts)
    keyed = {
        (int(i), int(j), tuple(map(int, s))): b.reshape(
            layouts.n_orbitals(species[i]), layouts.n_orbitals(species[j])
        )
        for i, j, s, b in zip(graph.bond_i, graph.bond_j, graph.bond_shift, pairs)
    }
    on = [b.reshape(layouts.n_orbitals(s), -1) for s, b in zip(species, onsite_blocks(onsite, species, layouts))]
    return species, on, keyed


@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_trained_model_rotates_blocks_with_wigner_d(predictor, seed):
    atoms = wse2_with_vacancies(np.random.default_rng(seed), repeat=(2, 1))
    rotation = Rotation.random(random_state=seed).as_matrix()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rotation.T + np.array([1.0, -2.0, 0.5])
    moved.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    species, on, pairs = _blocks(predictor, atoms)
    _, on_moved, pairs_moved = _blocks(predictor, moved)
    d = [wigner_d_orbitals(rotation, predictor.layouts.ls(s)) for s in range(predictor.layouts.n_species)]
    scale = max(np.abs(b).max() for b in on)
    for a, (block, block_moved) in enumerate(zip(on, on_moved)):
        expected = d[species[a]] @ block @ d[species[a]].T
        np.testing.assert_allclose(block_moved, expected, atol=1e-5 * scale)
    assert pairs.keys() == pairs_moved.keys()
    for (i, j, shift), block in pairs.items():
        expected = d[species[i]] @ block @ d[species[j]].T
        np.testing.assert_allclose(pairs_moved[(i, j, shift)], expected, atol=1e-5 * scale)


def test_trained_model_permutation_permutes_blocks(predictor):
    atoms = wse2_with_vacancies(np.random.default_rng(3), repeat=(2, 1))
    permutation = np.random.default_rng(4).permutation(len(atoms))
    species, on, pairs = _blocks(predictor, atoms)
    _, on_perm, pairs_perm = _blocks(predictor, atoms[permutation])
    new_index = np.argsort(permutation)
    scale = max(np.abs(b).max() for b in on)
    for a in range(len(atoms)):
        np.testing.assert_allclose(on_perm[new_index[a]], on[a], atol=1e-5 * scale)
    for (i, j, shift), block in pairs.items():
        key = (int(new_index[i]), int(new_index[j]), shift)
        if key in pairs_perm:
            np.testing.assert_allclose(pairs_perm[key], block, atol=1e-5 * scale)
        else:
            back = (int(new_index[j]), int(new_index[i]), tuple(-s for s in shift))
            np.testing.assert_allclose(pairs_perm[back], block.T, atol=1e-5 * scale)


def test_trained_model_ignores_padding_chunks_and_far_atoms(predictor):
    atoms = wse2_with_vacancies(np.random.default_rng(7), repeat=(2, 1))
    species, on, pairs = _blocks(predictor, atoms)
    scale = max(np.abs(b).max() for b in on)

    _, on_chunked, pairs_chunked = _blocks(predictor, atoms, InferenceOptions(atom_chunk=5, bond_chunk=100))
    far = atoms.copy()
    far.append("Se")
    far.positions[-1] = atoms.positions.mean(axis=0) + [0.0, 0.0, 20.0]
    _, on_far, pairs_far = _blocks(predictor, far)
    for other_on, other_pairs in ((on_chunked, pairs_chunked), (on_far, pairs_far)):
        for a in range(len(atoms)):
            np.testing.assert_allclose(other_on[a], on[a], atol=1e-6 * scale)
        for key, block in pairs.items():
            np.testing.assert_allclose(other_pairs[key], block, atol=1e-6 * scale)
