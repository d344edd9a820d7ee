"""mlh.model.atom_potential: the per-atom potential term u_a S_aa, (u_i + u_j) / 2 S_ij.

On synthetic records (random S): the irreps form used in training equals the record-value
form used in inference and the physics routes; equal levels give exactly the gauge shift
c S; H(k) stays Hermitian; the populations are the gradient of <rho, term>.
"""

from dataclasses import replace

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mlh.model.atom_potential import add_to_irreps, add_to_values, populations, value_atoms
from mlh.model.graph import MIN_DISTANCE, neighbour_pairs
from mlh.model.layouts import OutputLayouts
from mlh.model.targets import onsite_blocks, pair_blocks
from mlh.train.data import make_sample
from tests.synthetic import random_record

seeds = st.integers(0, 2**32 - 1)


def _levels(record, seed):
    return np.random.default_rng(seed).normal(0.0, 0.3, record.n_atoms)


@settings(max_examples=8, deadline=None)
@given(seed=seeds)
def test_irreps_form_equals_value_form(seed):
    record = random_record(seed % 1000, n_atoms=3)
    record = replace(record, ghost=np.zeros(record.n_atoms, bool))
    close, _, _, _ = neighbour_pairs(record.positions, record.cell, record.pbc, MIN_DISTANCE)
    assume(len(close) == 0)  # random positions may put atoms on top of each other
    u = _levels(record, seed)
    layouts = OutputLayouts.from_basis(record.basis)
    sample = make_sample(record, layouts, 4.0, 6.0, overlap=True)
    graph = sample.graph
    zero_on, zero_off = np.zeros_like(sample.onsite), np.zeros_like(sample.offsite)
    on, off = add_to_irreps(zero_on, zero_off, u, sample.onsite_overlap, sample.offsite_overlap,
                            graph.bond_i, graph.bond_j)
    atoms = value_atoms(record.pair_i, record.pair_j, record.orbital_counts)
    term_pair, term_onsite = add_to_values(np.zeros(record.n_pair_values),
                                           np.zeros(record.n_onsite_values), record.S_pair,
                                           record.S_onsite, u, atoms)
    species = layouts.species_index(record.numbers)
    expected_onsite = [record.onsite_block(term_onsite, a) for a in range(record.n_atoms)]
    for a, block in enumerate(onsite_blocks(on, species, layouts)):
        np.testing.assert_allclose(block, expected_onsite[a].ravel(), atol=1e-6)
    keys = {(int(i), int(j), *map(int, s)): p
            for p, (i, j, s) in enumerate(zip(record.pair_i, record.pair_j, record.pair_shift))}
    blocks = pair_blocks(off, species[graph.bond_i], species[graph.bond_j], layouts)
    compared = 0
    for b, (i, j, s) in enumerate(zip(graph.bond_i, graph.bond_j, graph.bond_shift)):
        p = keys.get((int(i), int(j), *map(int, s)))
        if p is not None:
            np.testing.assert_allclose(blocks[b], record.pair_block(term_pair, p).ravel(), atol=1e-6)
            compared += 1
    assert compared > 0


@settings(max_examples=8, deadline=None)
@given(seed=seeds, level=st.floats(-2.0, 2.0))
def test_equal_levels_are_the_gauge_shift_and_h_stays_hermitian(seed, level):
    record = random_record(seed % 1000, n_atoms=4)
    atoms = value_atoms(record.pair_i, record.pair_j, record.orbital_counts)
    H_pair, H_onsite = add_to_values(record.H_pair[0], record.H_onsite[0], record.S_pair,
                                     record.S_onsite, np.full(record.n_atoms, level), atoms)
    np.testing.assert_allclose(H_pair, record.H_pair[0] + level * record.S_pair, atol=1e-12)
    np.testing.assert_allclose(H_onsite, record.H_onsite[0] + level * record.S_onsite, atol=1e-12)

    H_pair, H_onsite = add_to_values(record.H_pair[0], record.H_onsite[0], record.S_pair,
                                     record.S_onsite, _levels(record, seed), atoms)
    k = np.random.default_rng(seed).uniform(-0.5, 0.5, 3)
    shifted = replace(record, H_pair=H_pair[None], H_onsite=H_onsite[None])
    hk = shifted.hamiltonian_k(k).toarray()
    assert np.abs(hk - hk.conj().T).max() < 1e-12


@settings(max_examples=8, deadline=None)
@given(seed=seeds)
def test_populations_are_the_gradient_of_the_term(seed):
    record = random_record(seed % 1000, n_atoms=4)
    rng = np.random.default_rng(seed)
    rho_pair, rho_onsite = rng.normal(size=record.n_pair_values), rng.normal(size=record.n_onsite_values)
    atoms = value_atoms(record.pair_i, record.pair_j, record.orbital_counts)

    def weighted(u):
        pair, onsite = add_to_values(0.0, 0.0, record.S_pair, record.S_onsite, u, atoms)
        return rho_pair @ pair + rho_onsite @ onsite

    q = populations(rho_pair, rho_onsite, record.S_pair, record.S_onsite, atoms, record.n_atoms)
    unit = np.eye(record.n_atoms)
    np.testing.assert_allclose([weighted(e) for e in unit], q, rtol=1e-12, atol=1e-12)
