"""Property tests of the untrained GEARS H model (mlh.model.nn.model.GearsH) in float32.

A tiny configuration and a WSe2-like two-species basis (Se: s, p, d; W: s, d, p, so
the output layouts need degree 4) are used. Parameters are random and seed-dependent:
the parameter tree (names and shapes) is the one `GearsH.init` builds (obtained with
`jax.eval_shape`, no compilation), filled with seeded random numbers, including
non-zero biases and layer-norm scales away from one. The symmetry properties tested
here must hold for every parameter value, and this avoids `Predictor.initialise`,
which takes ~45 s on a 2-core CPU (eager e3x initialisers). The scale-shift tables are
neutral (scales 1, on-site shifts 0) except for random non-zero coefficients of the
distance-dependent off-site shift of the even scalars, which exercises the shift path.

Every prediction is padded to one of two fixed shapes (`SMALL`, `LARGE`), so the
jitted model compiles at most twice. Comparisons between different graphs (rotated,
permuted, padded, batched) use `tolerance`: 1e-5 relative to the structure's largest
entry, floor 1e-5 eV; float32 results of different XLA code paths differ by a few ulp.
Energies in eV, lengths in Å.

The explicit example (seed 0: a 4-atom molecule whose atoms see each other near the
atom cutoff) exposes a float32 instability of `mlh.model.nn.layers.EquivariantLayerNorm`:
per-(parity, degree) normalisation with eps = 1e-6 amplifies rounding noise of
near-zero channels up to 1e3 per layer norm (two in a row in `BondCentred`), giving
O(0.1 eV) non-equivariant pair blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from mlh.model.graph import StructureGraph, build_graph, neighbour_pairs
from mlh.model.irreps import wigner_d_orbitals
from mlh.model.layouts import OutputLayouts
from mlh.model.nn.model import SWITCH_WIDTH, GearsH
from mlh.model.predictor import Predictor
from mlh.model.targets import onsite_blocks, pair_blocks
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.train.data import Sample, collate
from tests.models import ATOM_CUTOFF, BASIS, BOND_CUTOFF, neutral_scale_shift, random_params, tiny_config

MIN_SEPARATION = 1.6
"""Smallest interatomic distance of the random structures (Å; > 1.5 as required)."""

SMALL = (16, 512)
"""(atoms_multiple, edges_multiple) of single structures: one padded shape for all."""
LARGE = (32, 1024)
"""Alternative padding, also used for two structures batched together."""

TOLERANCE = 1e-5
"""Tolerance of float32 comparisons between different graphs: |dH| <= TOLERANCE * max(1 eV,
largest |H| entry of the structure). Measured float32 noise of an equivariant model of
this size is <= ~3e-6 relative (blocks up to ~10 eV)."""


def tolerance(*block_lists) -> float:
    """Absolute tolerance (eV) for one structure: TOLERANCE relative to its largest entry."""
    largest = max((np.abs(b).max() for blocks in block_lists for b in blocks if b.size), default=0.0)
    return TOLERANCE * max(1.0, float(largest))


LAYOUTS = OutputLayouts.from_basis(BASIS)
KINDS = ("molecule", "bulk", "slab")

seeds = st.integers(0, 2**32 - 1)
kinds = st.sampled_from(KINDS)
n_atoms_strategy = st.integers(4, 8)
fast = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Structure:
    species: np.ndarray  # (N,) model species indices
    positions: np.ndarray  # (N, 3) Å
    cell: np.ndarray  # (3, 3) rows, Å
    pbc: np.ndarray  # (3,)

    def graph(self) -> StructureGraph:
        return build_graph(self.species, self.positions, self.cell, self.pbc, ATOM_CUTOFF, BOND_CUTOFF)

    def moved(self, positions: np.ndarray, cell: np.ndarray | None = None) -> Structure:
        return Structure(self.species, positions, self.cell if cell is None else cell, self.pbc)


def _min_distance(new: np.ndarray, others: np.ndarray, cell: np.ndarray, pbc: np.ndarray) -> float:
    """Smallest |others + R cell - new| over R in {-1,0,1} along periodic axes (self images too)."""
    ranges = [(-1, 0, 1) if p else (0,) for p in pbc]
    shifts = np.array(np.meshgrid(*ranges, indexing="ij")).reshape(3, -1).T
    images = (shifts @ cell)[:, None, :]
    points = np.concatenate([others, new[None]])[None] + images  # (R, n, 3)
    distance = np.linalg.norm(points - new, axis=-1)
    distance[~shifts.any(axis=1), -1] = np.inf  # the new atom itself
    return float(distance.min())


FILLER = Structure(
    np.zeros(2, np.int32), np.array([[0.0, 0.0, 0.0], [2.4, 0.3, 0.1]]), np.eye(3) * 30.0, np.zeros(3, bool)
)
"""Two atoms with one edge each way and one bond."""


def random_structure(seed: int, n_atoms: int, kind: str) -> Structure:
    """4-8 atoms: a compact molecule, or a ~4.5 Å cell (3D or slab) whose atoms see their images."""
    rng = np.random.default_rng(seed)
    species = rng.integers(0, LAYOUTS.n_species, n_atoms).astype(np.int32)
    if kind == "molecule":
        pbc = np.zeros(3, bool)
        cell = np.eye(3) * 30.0
        box = np.eye(3) * (3.0 + 0.3 * n_atoms)
    else:
        pbc = np.array([True, True, kind == "bulk"])
        cell = np.diag(rng.uniform(4.0, 4.8, 3)) + rng.normal(0.0, 0.2, (3, 3))
        box = cell
    for _ in range(100):
        positions = np.zeros((0, 3))
        for _ in range(2000):
            candidate = rng.uniform(0.0, 1.0, 3) @ box
            if _min_distance(candidate, positions, cell, pbc) > MIN_SEPARATION:
                positions = np.concatenate([positions, candidate[None]])
                if len(positions) == n_atoms:
                    break
        if len(positions) == n_atoms:
            break
    assert len(positions) == n_atoms
    i, _, _, _ = neighbour_pairs(positions, cell, pbc, MIN_SEPARATION)
    assert len(i) == 0, "structure generator produced atoms closer than MIN_SEPARATION"
    return Structure(species, positions, cell, pbc)


class Gears:
    """The model, its tables and jitted entry points (compiled once per padded shape)."""

    def __init__(self) -> None:
        self.layouts = LAYOUTS
        config = tiny_config().model_copy(update={"atom_potential": True})
        self.predictor = Predictor(config, LAYOUTS, neutral_scale_shift(LAYOUTS, BOND_CUTOFF), None, {})
        self.model: GearsH = self.predictor.model
        self.tables = self.predictor.tables()
        far = np.array([[1000.0, 0.0, 0.0]], np.float32)
        zeros = np.zeros(1, np.int32)
        self.template = jax.eval_shape(
            self.model.init, jax.random.PRNGKey(0), zeros, zeros, zeros, far, zeros, zeros, far, self.tables
        )
        model = self.model
        self.apply = jax.jit(model.apply)
        self.descriptors = jax.jit(
            lambda params, *args: model.apply(params, *args, method=GearsH.atom_descriptors)
        )
        self.offsite = jax.jit(lambda params, *args: model.apply(params, *args, method=GearsH.offsite))
        self._params: dict[int, Any] = {}

    def params(self, seed: int) -> Any:
        if seed not in self._params:
            self._params[seed] = random_params(self.template, seed)
        return self._params[seed]

    def batch(self, graphs: list[StructureGraph], multiples: tuple[int, int]):
        samples = [
            Sample(
                f"s{n}",
                g,
                np.zeros((g.n_atoms, *self.layouts.onsite_shape), np.float32),
                np.zeros((g.n_bonds, *self.layouts.offsite_shape), np.float32),
            )
            for n, g in enumerate(graphs)
        ]
        batch = collate(samples, *multiples)
        # one padded shape per `multiples`, so nothing recompiles between examples
        assert batch.species.shape[0] == multiples[0]
        assert batch.edge_center.shape[0] == batch.bond_i.shape[0] == multiples[1]
        return batch

    def predict(
        self, graphs: list[StructureGraph], params: Any, multiples: tuple[int, int] = SMALL
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(on-site irreps (N, 2, L, F), pair irreps (B, 2, L, F), potential levels (N,)) of
        each graph, one batch.

        Graphs without any edge or bond are batched with a small filler structure, so that
        `collate` pads to the usual shapes (it pads empty lists to length 0).
        """
        if sum(g.n_edges for g in graphs) == 0 or sum(g.n_bonds for g in graphs) == 0:
            return self.predict([*graphs, FILLER.graph()], params, multiples)[:-1]
        batch = self.batch(graphs, multiples)
        onsite, offsite, potential = self.apply(
            params,
            batch.species,
            batch.edge_center,
            batch.edge_neighbor,
            batch.edge_vector,
            batch.bond_i,
            batch.bond_j,
            batch.bond_vector,
            self.tables,
        )
        onsite, offsite, potential = np.asarray(onsite), np.asarray(offsite), np.asarray(potential)
        out, atom, bond = [], 0, 0
        for g in graphs:
            out.append((onsite[atom : atom + g.n_atoms], offsite[bond : bond + g.n_bonds],
                        potential[atom : atom + g.n_atoms]))
            atom += g.n_atoms
            bond += g.n_bonds
        assert np.all(np.isfinite(onsite)) and np.all(np.isfinite(offsite))
        assert np.all(np.isfinite(potential))
        return out

    def blocks(self, graph: StructureGraph, onsite: np.ndarray, offsite: np.ndarray):
        """On-site blocks [(n_i, n_i)] and {(i, j, R): (n_i, n_j)} pair blocks (float64, eV)."""
        counts = np.array([self.layouts.n_orbitals(a) for a in range(self.layouts.n_species)])
        species = graph.species
        on = [
            b.reshape(counts[a], counts[a])
            for b, a in zip(onsite_blocks(onsite, species, self.layouts), species)
        ]
        si, sj = species[graph.bond_i], species[graph.bond_j]
        flat = pair_blocks(offsite, si, sj, self.layouts)
        pairs = {
            key: b.reshape(counts[a], counts[c])
            for key, b, a, c in zip(bond_keys(graph), flat, si, sj)
        }
        return on, pairs


def bond_keys(graph: StructureGraph) -> list[tuple[int, int, tuple[int, int, int]]]:
    return [
        (int(i), int(j), tuple(int(r) for r in shift))
        for i, j, shift in zip(graph.bond_i, graph.bond_j, graph.bond_shift)
    ]


def assert_near_cutoff_only(graph: StructureGraph, keys) -> None:
    """Bonds present in only one of two equivalent graphs must sit on the cutoff (rounding)."""
    lookup = dict(zip(bond_keys(graph), np.linalg.norm(graph.bond_vector, axis=1)))
    for key in keys:
        assert abs(lookup[key] - BOND_CUTOFF) < 1e-6, f"bond {key} missing from the transformed graph"


@pytest.fixture(scope="module")
def gears() -> Gears:
    return Gears()


# ------------------------------------------------------------------ 1. rotation


def _check_transformed(gears, structure, params, orthogonal, positions, cell) -> None:
    """Predictions after r -> Q r (+ t) equal D_i H_ij D_j^T; D from `orthogonal` per species."""
    g0 = structure.graph()
    g1 = structure.moved(positions, cell).graph()
    if structure.pbc.any():  # pairs of an atom with its own images are exercised
        assert np.any((g0.bond_i == g0.bond_j) & g0.bond_shift.any(axis=1))
    (on0, off0, u0), (on1, off1, u1) = gears.predict([g0], params)[0], gears.predict([g1], params)[0]
    blocks0, pairs0 = gears.blocks(g0, on0, off0)
    blocks1, pairs1 = gears.blocks(g1, on1, off1)
    atol = tolerance(blocks0, pairs0.values())
    assert np.abs(u0).max() > 1e-3
    np.testing.assert_allclose(u1, u0, rtol=0, atol=atol, err_msg="potential levels are invariant")
    d = orthogonal
    for atom, (h0, h1) in enumerate(zip(blocks0, blocks1)):
        a = int(structure.species[atom])
        expected = d[a] @ h0 @ d[a].T
        np.testing.assert_allclose(h1, expected, rtol=0, atol=atol, err_msg=f"on-site {atom}")
    assert_near_cutoff_only(g0, pairs0.keys() - pairs1.keys())
    assert_near_cutoff_only(g1, pairs1.keys() - pairs0.keys())
    common = pairs0.keys() & pairs1.keys()
    assert len(common) > 0
    for key in sorted(common):
        i, j, _ = key
        a, b = int(structure.species[i]), int(structure.species[j])
        expected = d[a] @ pairs0[key] @ d[b].T
        distance = np.linalg.norm(structure.positions[j] + np.array(key[2]) @ structure.cell - structure.positions[i])
        np.testing.assert_allclose(
            pairs1[key], expected, rtol=0, atol=atol, err_msg=f"pair {key}, {distance:.3f} Å"
        )


@given(seed=seeds, model_seed=seeds, n_atoms=n_atoms_strategy, kind=kinds)
@example(seed=0, model_seed=0, n_atoms=4, kind="molecule")
@fast
def test_rotation_translation_equivariance(gears, seed, model_seed, n_atoms, kind):
    """r -> R r + t (cell rows -> R c): H_ii -> D_i H_ii D_i^T, H_ij(R) -> D_i H_ij(R) D_j^T.

    Bonds are matched by (i, j, R): lattice shifts are unchanged by rotating the cell.
    Tolerance: 1e-5 relative to the structure's largest |H| entry (floor 1e-5 eV), float32.
    """
    structure = random_structure(seed, n_atoms, kind)
    rng = np.random.default_rng(seed + 1)
    rotation = Rotation.random(random_state=seed).as_matrix()
    translation = rng.normal(0.0, 3.0, 3)
    d = [wigner_d_orbitals(rotation, LAYOUTS.ls(a)) for a in range(LAYOUTS.n_species)]
    _check_transformed(
        gears,
        structure,
        gears.params(model_seed),
        d,
        structure.positions @ rotation.T + translation,
        structure.cell @ rotation.T,
    )


@given(seed=seeds, model_seed=seeds, n_atoms=n_atoms_strategy, kind=kinds)
@example(seed=0, model_seed=0, n_atoms=4, kind="molecule")
@fast
def test_improper_rotation_equivariance(gears, seed, model_seed, n_atoms, kind):
    """Inversion composed with a rotation, r -> -R r: D(-R) = D(R) diag((-1)^l) per orbital.

    GEARS H keeps pseudotensors, so the model is O(3)- (not only SO(3)-) equivariant:
    mirror-symmetric structures get mirror-symmetric Hamiltonians.
    """
    structure = random_structure(seed, n_atoms, kind)
    rotation = Rotation.random(random_state=seed).as_matrix()
    d = []
    for a in range(LAYOUTS.n_species):
        parity = np.concatenate([np.full(2 * l + 1, (-1.0) ** l) for l in LAYOUTS.ls(a)])
        d.append(wigner_d_orbitals(rotation, LAYOUTS.ls(a)) * parity)
    improper = -rotation
    _check_transformed(
        gears,
        structure,
        gears.params(model_seed),
        d,
        structure.positions @ improper.T,
        structure.cell @ improper.T,
    )


# --------------------------------------------------------------- 2. permutation


@given(seed=seeds, model_seed=seeds, n_atoms=n_atoms_strategy, kind=kinds)
@example(seed=0, model_seed=0, n_atoms=4, kind="molecule")
@fast
def test_permutation_equivariance(gears, seed, model_seed, n_atoms, kind):
    """Relabelling atoms relabels blocks; a non-canonical image pair appears transposed."""
    structure = random_structure(seed, n_atoms, kind)
    params = gears.params(model_seed)
    order = np.random.default_rng(seed).permutation(n_atoms)  # new atom k is old atom order[k]
    new_index = np.argsort(order)  # p(old i)
    permuted = Structure(structure.species[order], structure.positions[order], structure.cell, structure.pbc)
    g0, g1 = structure.graph(), permuted.graph()
    (on0, off0, u0), (on1, off1, u1) = gears.predict([g0], params)[0], gears.predict([g1], params)[0]
    blocks0, pairs0 = gears.blocks(g0, on0, off0)
    blocks1, pairs1 = gears.blocks(g1, on1, off1)
    atol = tolerance(blocks0, pairs0.values())
    np.testing.assert_allclose(u1[new_index], u0, rtol=0, atol=atol)
    for atom in range(n_atoms):
        np.testing.assert_allclose(blocks1[new_index[atom]], blocks0[atom], rtol=0, atol=atol)
    assert len(pairs0) == len(pairs1)
    for (i, j, shift), h in pairs0.items():
        pi, pj = int(new_index[i]), int(new_index[j])
        key = (pi, pj, shift)
        if key in pairs1:
            np.testing.assert_allclose(pairs1[key], h, rtol=0, atol=atol, err_msg=f"pair {key}")
        else:
            key = (pj, pi, tuple(-r for r in shift))
            assert key in pairs1, f"pair {(i, j, shift)} lost after permutation"
            np.testing.assert_allclose(pairs1[key], h.T, rtol=0, atol=atol, err_msg=f"pair {key}")


# ------------------------------------------------------ 3. symmetry by construction


@given(seed=seeds, model_seed=seeds, n_atoms=n_atoms_strategy, kind=kinds)
@fast
def test_reverse_pair_is_transpose_and_onsite_symmetric(gears, seed, model_seed, n_atoms, kind):
    """GearsH.offsite(i, j, v) == GearsH.offsite(j, i, -v)^T, for bonds and arbitrary vectors;
    on-site blocks are symmetric."""
    structure = random_structure(seed, n_atoms, kind)
    params = gears.params(model_seed)
    graph = structure.graph()
    batch = gears.batch([graph], SMALL)
    descriptors = gears.descriptors(
        params, batch.species, batch.edge_center, batch.edge_neighbor, batch.edge_vector
    )
    rng = np.random.default_rng(seed)
    n_bonds = graph.n_bonds
    n_pad = batch.bond_i.shape[0]
    # real bonds first, then random atom pairs (i == j included) with random vectors
    i = np.concatenate([graph.bond_i, rng.integers(0, n_atoms, n_pad - n_bonds)]).astype(np.int32)
    j = np.concatenate([graph.bond_j, rng.integers(0, n_atoms, n_pad - n_bonds)]).astype(np.int32)
    direction = rng.normal(size=(n_pad - n_bonds, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    length = rng.uniform(0.5, BOND_CUTOFF, n_pad - n_bonds)[:, None]
    vector = np.concatenate([graph.bond_vector, direction * length]).astype(np.float32)
    species = batch.species
    forward = np.asarray(
        gears.offsite(params, descriptors[i], descriptors[j], species[i], species[j], vector, gears.tables)
    )
    backward = np.asarray(
        gears.offsite(params, descriptors[j], descriptors[i], species[j], species[i], -vector, gears.tables)
    )
    blocks_ij = pair_blocks(forward, species[i], species[j], LAYOUTS)
    blocks_ji = pair_blocks(backward, species[j], species[i], LAYOUTS)
    counts = [LAYOUTS.n_orbitals(a) for a in range(LAYOUTS.n_species)]
    assert max(np.abs(b).max() for b in blocks_ij) > 0.1
    for n, (hij, hji) in enumerate(zip(blocks_ij, blocks_ji)):
        hij = hij.reshape(counts[species[i[n]]], counts[species[j[n]]])
        hji = hji.reshape(counts[species[j[n]]], counts[species[i[n]]])
        np.testing.assert_allclose(hji, hij.T, rtol=0, atol=1e-6, err_msg=f"pair {n}")

    # the full model gives the same pair irreps as GearsH.offsite, and symmetric on-site blocks
    onsite, offsite, _ = gears.predict([graph], params)[0]
    np.testing.assert_allclose(offsite, forward[:n_bonds], rtol=0, atol=tolerance(offsite))
    for atom, block in enumerate(onsite_blocks(onsite, graph.species, LAYOUTS)):
        n = counts[graph.species[atom]]
        block = block.reshape(n, n)
        np.testing.assert_allclose(block, block.T, rtol=0, atol=1e-7, err_msg=f"on-site {atom}")


# ------------------------------------------------------ 4. padding and batching


@given(seed=seeds, other_seed=seeds, model_seed=seeds, n_atoms=n_atoms_strategy, kind=kinds,
       other_kind=kinds)
@fast
def test_padding_and_batching_do_not_change_predictions(
    gears, seed, other_seed, model_seed, n_atoms, kind, other_kind
):
    """Alone, padded differently, or batched before/after another structure: same outputs."""
    params = gears.params(model_seed)
    graph = random_structure(seed, n_atoms, kind).graph()
    other = random_structure(other_seed, 8, other_kind).graph()
    alone_on, alone_off, alone_u = gears.predict([graph], params, SMALL)[0]
    variants = [
        gears.predict([graph], params, LARGE)[0],
        gears.predict([other, graph], params, LARGE)[1],
        gears.predict([graph, other], params, LARGE)[0],
    ]
    atol = tolerance(alone_on, alone_off)
    for on, off, u in variants:
        np.testing.assert_allclose(on, alone_on, rtol=0, atol=atol)
        np.testing.assert_allclose(u, alone_u, rtol=0, atol=atol)
        np.testing.assert_allclose(off, alone_off, rtol=0, atol=atol)


@given(seed=seeds, model_seed=seeds, n_atoms=n_atoms_strategy)
@fast
def test_far_atom_changes_nothing(gears, seed, model_seed, n_atoms):
    """An atom beyond both cutoffs of every other atom (non-periodic) leaves them unchanged."""
    params = gears.params(model_seed)
    structure = random_structure(seed, n_atoms, "molecule")
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    centre = structure.positions.mean(axis=0)
    reach = np.linalg.norm(structure.positions - centre, axis=1).max()
    far = centre + direction * (reach + max(ATOM_CUTOFF, BOND_CUTOFF) + rng.uniform(0.01, 3.0))
    k = int(rng.integers(0, n_atoms + 1))  # insertion index of the far atom
    positions = np.insert(structure.positions, k, far, axis=0)
    species = np.insert(structure.species, k, rng.integers(0, LAYOUTS.n_species)).astype(np.int32)
    bigger = Structure(species, positions, structure.cell, structure.pbc)
    g0, g1 = structure.graph(), bigger.graph()
    (on0, off0, u0), (on1, off1, u1) = gears.predict([g0], params)[0], gears.predict([g1], params)[0]
    old = np.arange(n_atoms)
    new = old + (old >= k)  # index in the bigger structure
    atol = tolerance(on0, off0)
    np.testing.assert_allclose(on1[new], on0, rtol=0, atol=atol)
    np.testing.assert_allclose(u1[new], u0, rtol=0, atol=atol)
    assert g1.n_bonds == g0.n_bonds
    np.testing.assert_array_equal(g1.bond_i, new[g0.bond_i])
    np.testing.assert_array_equal(g1.bond_j, new[g0.bond_j])
    np.testing.assert_allclose(off1, off0, rtol=0, atol=atol)


# ------------------------------------------------ 5. assembled Γ Hamiltonian


def predicted_record(structure: Structure, graph: StructureGraph, onsite, offsite) -> HamiltonianRecord:
    numbers = np.asarray(LAYOUTS.numbers)[structure.species]
    on = onsite_blocks(onsite, structure.species, LAYOUTS)
    pairs = pair_blocks(offsite, structure.species[graph.bond_i], structure.species[graph.bond_j], LAYOUTS)
    counts = BASIS.orbital_counts(numbers)
    return HamiltonianRecord(
        numbers=numbers,
        positions=structure.positions,
        cell=structure.cell,
        pbc=structure.pbc,
        ghost=np.zeros(len(numbers), bool),
        basis=BASIS,
        pair_i=graph.bond_i.astype(np.int64),
        pair_j=graph.bond_j.astype(np.int64),
        pair_shift=graph.bond_shift.astype(np.int64),
        S_pair=np.zeros(sum(b.size for b in pairs)),
        S_onsite=np.concatenate([np.eye(n).ravel() for n in counts]),
        H_pair=np.concatenate([b for b in pairs] or [np.zeros(0)])[None],
        H_onsite=np.concatenate(on)[None],
    )


@given(seed=seeds, model_seed=seeds, n_atoms=n_atoms_strategy, kind=kinds)
@fast
def test_assembled_gamma_hamiltonian_is_exactly_symmetric(gears, seed, model_seed, n_atoms, kind):
    structure = random_structure(seed, n_atoms, kind)
    graph = structure.graph()
    onsite, offsite, _ = gears.predict([graph], gears.params(model_seed))[0]
    record = predicted_record(structure, graph, onsite, offsite)
    h = record.hamiltonian_k(None).toarray()
    assert np.abs(h).max() > 0.1
    assert np.abs(h - h.T).max() == 0.0
    if structure.pbc.any():
        k = np.random.default_rng(seed).uniform(-0.5, 0.5, 3) * structure.pbc
        hk = record.hamiltonian_k(k).toarray()
        assert np.abs(hk - hk.conj().T).max() == 0.0


# ------------------------------------------------------ 6. smooth bond cutoff


@given(model_seed=seeds, rotation_seed=seeds, species=st.tuples(st.integers(0, 1), st.integers(0, 1)),
       gap=st.sampled_from([1e-3, 1e-4, 1e-6]))
@fast
def test_pair_vanishes_at_bond_cutoff(gears, model_seed, rotation_seed, species, gap):
    """Two atoms at bond cutoff - gap (gap <= 1e-3 Å): |H_ij| < 1e-4 eV, H_ii unaffected."""
    params = gears.params(model_seed)
    direction = Rotation.random(random_state=rotation_seed).as_matrix()[:, 0]
    positions = np.array([np.zeros(3), (BOND_CUTOFF - gap) * direction]) + 10.0
    pair = Structure(np.array(species, np.int32), positions, np.eye(3) * 30.0, np.zeros(3, bool))
    graph = pair.graph()
    assert graph.n_bonds == 1 and graph.n_edges == 0
    onsite, offsite, _ = gears.predict([graph], params)[0]
    assert np.abs(offsite).max() < 1e-4
    # well inside the switching region the pair prediction is not small
    inner = pair.moved(np.array([np.zeros(3), (BOND_CUTOFF - 2.0 * SWITCH_WIDTH) * direction]))
    _, inner_offsite, _ = gears.predict([inner.graph()], params)[0]
    assert np.abs(inner_offsite).max() > 1e-2
    # the on-site blocks of two atoms beyond the atom cutoff are those of isolated atoms
    for atom in range(2):
        alone = Structure(pair.species[atom : atom + 1], positions[atom : atom + 1], pair.cell, pair.pbc)
        single_on, _, _ = gears.predict([alone.graph()], params)[0]
        np.testing.assert_allclose(onsite[atom], single_on[0], rtol=0, atol=tolerance(single_on))
