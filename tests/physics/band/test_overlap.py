"""physics.band.overlap: differentiable S(R) equals mlh.gpaw.overlap / GPAW; derivatives equal FD."""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.gpaw.overlap import OverlapTables, gpaw_setups, overlap_blocks, wrapped_positions
from mlh.gpaw.settings import GPAWSettings
from mlh.gpaw.structures import wse2_with_vacancies
from physics.band.overlap import (
    evaluate_radial_table,
    overlap_blocks_jax,
    overlap_force_term,
    overlap_topology,
    overlap_trace,
    radial_table,
)
from tests.structures import STRUCTURES

WSE2_SETTINGS = GPAWSettings(setups={"W": "6"})
FD_STEP = 1e-4  # Å


pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture(scope="module")
def system():
    """Lazily built (atoms, tables, topology) of the conftest structures; smooth or GPAW's
    skipping of spline values below 1e-10 (smooth=False)."""
    cache = {}

    def get(name, smooth=True):
        if name not in cache:
            build, settings = STRUCTURES[name]
            atoms = build()
            cache[name] = (atoms, OverlapTables(gpaw_setups(atoms, settings)))
        if (name, smooth) not in cache:
            atoms, tables = cache[name]
            cache[name, smooth] = overlap_topology(atoms, tables, smooth=smooth)
        return (*cache[name], cache[name, smooth])

    return get


@pytest.fixture
def smooth_numpy(monkeypatch):
    """mlh.gpaw.overlap without GPAW's skip of spline values below 1e-10, so that its S is
    smooth and finite differences see no steps."""
    import mlh.gpaw.overlap

    monkeypatch.setattr(mlh.gpaw.overlap, "_SPLINE_ZERO", 0.0)


@jax.jit
def jvp_jit(positions, direction, topology):
    return jax.jvp(lambda p: overlap_blocks_jax(p, topology), (positions,), (direction,))[1]


def numpy_S(atoms, tables, topology, positions) -> np.ndarray:
    """mlh.gpaw.overlap's S_pair and S_onsite (concatenated) for the topology's pairs."""
    S_pair, S_onsite = tables.blocks(positions, atoms.cell.array, atoms.pbc, topology.pair_i,
                                     topology.pair_j, topology.pair_shift)
    return np.concatenate([S_pair, S_onsite])


def jax_S(topology, positions) -> np.ndarray:
    """physics.band.overlap's S_pair and S_onsite (concatenated)."""
    return np.concatenate(overlap_blocks_jax(jnp.asarray(positions), topology))


def test_radial_table_equals_gpaw_expansion(system):
    """Splines rebuilt from GPAW's grid values: same two-centre integrals, also past rc
    (exactly with GPAW's skip of spline values below 1e-10)."""
    _, tables, _ = system("quartz")
    rng = np.random.default_rng(0)
    R = rng.normal(size=(300, 3))
    R *= rng.uniform(0, 20, 300)[:, None] / np.linalg.norm(R, axis=1, keepdims=True)
    R[0] = 0.0
    for pair_table in [tables.O[0, 1], tables.O[1, 1], tables.P[0, 1], tables.P[1, 0]]:
        reference = pair_table.evaluate(R)
        for smooth, tolerance in [(False, 1e-14), (True, 1e-6)]:
            table = radial_table(pair_table, np.inf, smooth=smooth)
            mine = jax.jit(evaluate_radial_table)(table, jnp.asarray(R))
            np.testing.assert_allclose(mine, reference, rtol=0, atol=tolerance)


@pytest.mark.parametrize("name", ["water", "wse2", "quartz", "silicon"])
def test_equals_numpy_overlap(system, name):
    """GPAW's skip of tiny spline values: equal to rounding; smooth: within 1e-6."""
    atoms, tables, topology = system(name, smooth=False)
    positions = wrapped_positions(atoms)
    reference = numpy_S(atoms, tables, topology, positions)
    assert np.abs(jax_S(topology, positions) - reference).max() < 1e-12
    assert topology.n_dropped == 0
    assert np.abs(jax_S(system(name)[2], positions) - reference).max() < 1e-6
    S_onsite = np.asarray(overlap_blocks_jax(jnp.asarray(positions), topology)[1])
    start = 0
    for n in tables.nao_I[tables.type_a]:
        block = S_onsite[start:start + n * n].reshape(n, n)
        assert np.array_equal(block, block.T)
        start += n * n


@pytest.mark.gpaw
@pytest.mark.parametrize("name", ["water", "wse2", "quartz", "silicon"])
def test_equals_gpaw_record(gpaw_records, name):
    """The record's own (dropped) pair list: smooth S within 1e-6 of GPAW's (seen: <= 1e-7),
    with GPAW's skip of tiny spline values equal to rounding (seen: ~1e-15)."""
    atoms, record = gpaw_records(name)
    tables = OverlapTables(gpaw_setups(atoms, STRUCTURES[name][1]))
    pairs = (record.pair_i, record.pair_j, record.pair_shift)
    for smooth, tolerance in [(True, 1e-6), (False, 1e-12)]:
        topology = overlap_topology(atoms, tables, pairs=pairs, smooth=smooth)
        S_pair, S_onsite = overlap_blocks_jax(jnp.asarray(record.positions), topology)
        assert np.abs(S_pair - record.S_pair).max() < tolerance
        assert np.abs(S_onsite - record.S_onsite).max() < tolerance


@pytest.mark.gpaw
@pytest.mark.parametrize("name", ["water", "wse2"])
def test_sum_rules_with_density_matrices(gpaw_records, name):
    """With rho, W of the record's own H: Tr[rho S(R)] = N and Tr[W S(R)] = E_band; the
    blocks of physics.density_matrix share the layout of S(R)."""
    from physics.density_matrix import density_matrices_for_record, density_matrix_blocks

    atoms, record = gpaw_records(name)
    tables = OverlapTables(gpaw_setups(atoms, STRUCTURES[name][1]))
    topology = overlap_topology(atoms, tables,
                                pairs=(record.pair_i, record.pair_j, record.pair_shift))
    dm = density_matrices_for_record(record)
    rho = density_matrix_blocks(dm, record)
    W = density_matrix_blocks(dm, record, energy_weighted=True)
    positions = jnp.asarray(record.positions)
    assert abs(overlap_trace(*rho, positions, topology) - dm.n_electrons) < 1e-8
    assert abs(overlap_trace(*W, positions, topology) - dm.band_energy) < 1e-6


def test_rattled_supercell_with_record_pairs():
    """A rattled WSe2 supercell with a vacancy; the pair list of mlh.gpaw.overlap (negligible
    pairs dropped) loses only three-centre terms of negligible size."""
    atoms = wse2_with_vacancies(np.random.default_rng(1), repeat=(3, 2), rattle=0.1)
    tables = OverlapTables(gpaw_setups(atoms, WSE2_SETTINGS))
    reference = overlap_blocks(atoms, WSE2_SETTINGS, tables=tables)
    topology = overlap_topology(
        atoms, tables, pairs=(reference.pair_i, reference.pair_j, reference.pair_shift),
        smooth=False)
    S_pair, S_onsite = overlap_blocks_jax(jnp.asarray(reference.positions), topology)
    assert np.abs(S_pair - reference.S_pair).max() < 1e-8
    assert np.abs(S_onsite - reference.S_onsite).max() < 1e-8
    assert topology.n_dropped > 0


def test_chunk_size_does_not_change_values(system):
    atoms, tables, topology = system("wse2")
    small = overlap_topology(atoms, tables, chunk_size=7)
    positions = wrapped_positions(atoms)
    assert np.abs(jax_S(small, positions) - jax_S(topology, positions)).max() < 1e-15


@pytest.mark.parametrize("name", ["wse2", "quartz"])
def test_derivative_equals_finite_differences(system, smooth_numpy, name):
    """jvp along random displacements vs central differences of mlh.gpaw.overlap's numpy S; for
    quartz, the PAW three-centre part of the derivative is checked to matter."""
    atoms, tables, topology = system(name)
    positions = wrapped_positions(atoms)
    rng = np.random.default_rng(2)
    for _ in range(2):
        d = rng.normal(size=positions.shape)
        d /= np.linalg.norm(d)
        fd = (numpy_S(atoms, tables, topology, positions + FD_STEP * d)
              - numpy_S(atoms, tables, topology, positions - FD_STEP * d)) / (2 * FD_STEP)
        tangent = np.concatenate(jvp_jit(jnp.asarray(positions), jnp.asarray(d), topology))
        scale = np.abs(fd).max()
        assert np.abs(tangent - fd).max() < 1e-6 * scale
    if name == "quartz":
        no_paw = dataclasses.replace(topology, triples=())
        two_centre = np.concatenate(jvp_jit(jnp.asarray(positions), jnp.asarray(d), no_paw))
        assert np.abs(tangent - two_centre).max() > 1e-2 * scale


def test_force_term_equals_finite_differences(system, smooth_numpy):
    """F^S = d/dR Tr[W S(R)] (W fixed, two spin channels) vs central differences of the
    numpy trace (WSe2: self-image pairs); translating every atom leaves S unchanged, so the
    terms sum to zero."""
    atoms, tables, topology = system("wse2")
    positions = wrapped_positions(atoms)
    n_pair = int(np.sum(tables.nao_I[tables.type_a[topology.pair_i]]
                        * tables.nao_I[tables.type_a[topology.pair_j]]))
    rng = np.random.default_rng(3)
    W = rng.normal(size=(2, len(numpy_S(atoms, tables, topology, positions))))  # two spins
    W_pair, W_onsite = W[:, :n_pair], W[:, n_pair:]
    weights = np.concatenate([2 * W_pair.sum(0), W_onsite.sum(0)])

    def trace(p):
        return weights @ numpy_S(atoms, tables, topology, p)

    force = np.asarray(overlap_force_term(W_pair, W_onsite, positions, topology))
    assert force.shape == (len(atoms), 3)
    np.testing.assert_allclose(trace(positions),
                               overlap_trace(W_pair, W_onsite, positions, topology), rtol=1e-12)
    for atom in range(len(atoms)):
        for c in range(3):
            step = np.zeros_like(positions)
            step[atom, c] = FD_STEP
            fd = (trace(positions + step) - trace(positions - step)) / (2 * FD_STEP)
            assert abs(force[atom, c] - fd) < 1e-6 * np.abs(force).max()
    assert np.abs(force.sum(axis=0)).max() < 1e-10 * np.abs(force).max()


def test_skin_keeps_topology_exact():
    """With a skin, S at displaced positions equals mlh.gpaw.overlap there (same pair list)."""
    atoms = wse2_with_vacancies(np.random.default_rng(4), repeat=(2, 1), mean_vacancies=0)
    tables = OverlapTables(gpaw_setups(atoms, WSE2_SETTINGS))
    topology = overlap_topology(atoms, tables, skin=0.6, smooth=False)
    tight = overlap_topology(atoms, tables)
    assert len(topology.pair_i) > len(tight.pair_i)
    rng = np.random.default_rng(5)
    d = rng.normal(size=(len(atoms), 3))
    moved = topology.positions + 0.29 * d / np.linalg.norm(d, axis=1, keepdims=True)
    assert topology.within_skin(moved)
    assert not topology.within_skin(moved + 0.02 * d)
    assert (np.abs(jax_S(topology, moved) - numpy_S(atoms, tables, topology, moved)).max()
            < 1e-12)


def test_bad_input(system):
    atoms, tables, topology = system("water")
    with pytest.raises(MLHError, match="shape"):
        overlap_blocks_jax(jnp.zeros((2, 3)), topology)
    with pytest.raises(MLHError, match="stored once"):
        overlap_topology(atoms, tables, pairs=(np.array([1]), np.array([0]), np.zeros((1, 3))))
    with pytest.raises(MLHError, match="do not belong"):
        overlap_topology(atoms[:2], tables)
    with pytest.raises(MLHError, match="W_pair has shape"):
        overlap_force_term(np.zeros(5), np.zeros(5), topology.positions, topology)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(MLHError, match="jax_enable_x64"):
            overlap_blocks_jax(topology.positions, topology)
    finally:
        jax.config.update("jax_enable_x64", True)


@pytest.mark.slow
@pytest.mark.parametrize("repeat", [(9, 9), (18, 18)])
def test_large_wse2_timing(repeat):
    """~500 and ~2,000 atoms: equal to mlh.gpaw.overlap; prints timings (run with -s)."""
    atoms = wse2_with_vacancies(np.random.default_rng(0), repeat=repeat)
    tables = OverlapTables(gpaw_setups(atoms, WSE2_SETTINGS))
    start = time.perf_counter()
    topology = overlap_topology(atoms, tables)
    built = time.perf_counter() - start
    positions = topology.positions
    S = jax_S(topology, positions)
    start = time.perf_counter()
    S = jax_S(topology, positions)
    evaluated = time.perf_counter() - start
    W = np.random.default_rng(0).normal(size=S.shape)
    n_pair = len(S) - topology.onsite_gather.size
    np.asarray(overlap_force_term(W[:n_pair], W[n_pair:], positions, topology))
    start = time.perf_counter()
    np.asarray(overlap_force_term(W[:n_pair], W[n_pair:], positions, topology))
    forces = time.perf_counter() - start
    print(f"\n{len(atoms)} atoms, {len(topology.pair_i)} pairs: topology {built:.2f} s, "
          f"S {evaluated:.2f} s, force term {forces:.2f} s (after compilation)")
    assert np.abs(S - numpy_S(atoms, tables, topology, positions)).max() < 1e-6
