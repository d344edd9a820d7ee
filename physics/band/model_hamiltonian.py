"""The predictor's Hamiltonian as a differentiable JAX function of the positions.

For a fixed neighbour topology (built in numpy by `hamiltonian_topology`) the predicted
H(R) blocks are

    positions -> edge and bond vectors tau_j + R @ cell - tau_i
              -> GEARS H model (mlh.model.kernel: atom descriptors, on-site and pair irreps,
                 the same kernel inference and training call)
              -> blocks (linear Clebsch-Gordan maps of mlh.model.irreps, per species pair),

all in jax.numpy, so jax.grad of Tr[rho H] gives the band part of the forces. The jitted
part works on padded arrays (atoms, edges, bonds and the atoms or bonds of every species
(pair) rounded up by `padded_size`), so structures of similar size share compiled code;
`HamiltonianTopology.record_blocks` maps its output to the record layout (mlh.record.hamiltonian) of a
given pair list, and `flat_cotangent` maps record-layout density matrices back. The pair
list is the caller's (e.g. the union of the overlap pairs and the model's bonds, see
physics.band.route); pairs the model does not predict (beyond its bond cutoff) get H = 0,
as mlh.inference.prediction.predict_record gives them. Edges and bonds are listed up to the model's
cutoffs plus a skin; the model's smooth cutoffs make every listed edge or bond beyond its
cutoff contribute exactly zero, so the topology stays exact while no atom moved more than
skin / 2. The model runs in float64 (its float32 parameters converted): H equals
predict_record's float32 H to float32 rounding (~1e-6 relative).

The whole structure is evaluated at once (memory grows with the number of bonds; fine to
a few hundred atoms). Units: positions, cell and skin in Å, H in eV. Needs float64:
call inside `jax.enable_x64(True)` or after `jax.config.update("jax_enable_x64", True)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from mlh.errors import MLHError
from mlh.model.graph import build_graph, check_min_distance
from mlh.model.irreps import irreps_to_blocks
from mlh.model.kernel import far_vectors
from mlh.model.predictor import Predictor
from physics._jax import SkinnedTopology, register_pytree, require_x64

__all__ = ["ModelInputs", "HamiltonianTopology", "hamiltonian_topology", "ModelHamiltonian",
           "padded_size"]


@dataclass(frozen=True, eq=False)
class _BlockGroup:
    """Items (atoms or bonds) of one species (pair) whose blocks come from one linear map.

    Attributes:
        items: (n,) indices into the irreps array of the items.
        matrix: (K, n_i * n_j) map from flattened irreps to the flattened block.
    """

    items: np.ndarray
    matrix: np.ndarray


register_pytree(_BlockGroup)


@dataclass(frozen=True, eq=False)
class ModelInputs:
    """The padded, position-independent model input of one structure (a pytree).

    Attributes:
        cell: (3, 3) lattice vectors as rows (Å), fixed.
        species: (N,) model species indices (padding: 0).
        edge_center, edge_neighbor: (E,) atom-centred edges within the atom cutoff + skin;
            edge_shift: (E, 3) lattice shifts; edge_valid: (E,) False for padding.
        bond_i, bond_j: (B,) canonical bonds within the bond cutoff + skin;
            bond_shift: (B, 3); bond_valid: (B,).
        onsite_groups: one group per species (items: atoms).
        pair_groups: one group per ordered species pair (items: bonds).
    """

    cell: np.ndarray
    species: np.ndarray
    edge_center: np.ndarray
    edge_neighbor: np.ndarray
    edge_shift: np.ndarray
    edge_valid: np.ndarray
    bond_i: np.ndarray
    bond_j: np.ndarray
    bond_shift: np.ndarray
    bond_valid: np.ndarray
    onsite_groups: tuple[_BlockGroup, ...]
    pair_groups: tuple[_BlockGroup, ...]


register_pytree(ModelInputs)


@dataclass(frozen=True, eq=False)
class HamiltonianTopology(SkinnedTopology):
    """Everything about the predicted H(R) of one structure that does not depend on positions.

    Built by `hamiltonian_topology`.

    Attributes:
        positions: (n_atoms, 3) reference positions (Å; wrapped as GPAW wraps them): the
            lattice shifts refer to these, so evaluate at positions moved continuously
            from them.
        inputs: the padded model input (pass to `ModelHamiltonian.apply`).
        pair_gather: (n_pair_values,) index of each H_pair value of the pair list in the
            concatenated flattened pair-group blocks; the last index points at a zero.
        onsite_gather: (n_onsite_values,) likewise for H_onsite and the on-site groups.
        n_pair_flat, n_onsite_flat: lengths of the flat pair and on-site group blocks.
        skin: extra reach (Å): exact while no atom moved more than skin / 2.
    """

    positions: np.ndarray
    inputs: ModelInputs
    pair_gather: np.ndarray
    onsite_gather: np.ndarray
    n_pair_flat: int
    n_onsite_flat: int
    skin: float

    def padded_positions(self, positions: np.ndarray) -> np.ndarray:
        """(N, 3) positions (Å) padded with zeros to the model input's atom count."""
        padded = np.zeros((len(self.inputs.species), 3))
        padded[:self.n_atoms] = positions
        return padded

    def record_blocks(self, pair_flat: np.ndarray, onsite_flat: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
        """H_pair (n_pair_values,) and H_onsite (n_onsite_values,) in the record layout of
        the pair list, from `ModelHamiltonian.apply`'s flat group blocks."""
        pair_flat = np.append(np.asarray(pair_flat), 0.0)
        return pair_flat[self.pair_gather], np.asarray(onsite_flat)[self.onsite_gather]

    def flat_cotangent(self, rho_pair: np.ndarray, rho_onsite: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """rho in the flat group layout such that <flat rho, flat H> = 2 <rho_pair, H_pair>
        + <rho_onsite, H_onsite> = Tr[rho H] (record-layout rho, e.g. from
        physics.density_matrix.density_matrix_blocks)."""
        pair = 2.0 * np.bincount(self.pair_gather, weights=rho_pair,
                                 minlength=self.n_pair_flat + 1)[:-1]
        onsite = np.bincount(self.onsite_gather, weights=rho_onsite,
                             minlength=self.n_onsite_flat)
        return pair, onsite

    def check_distances(self, positions: np.ndarray, source: str = "structure") -> None:
        """MLHError if two atoms are closer than mlh.model.graph.MIN_DISTANCE (every pair that
        close is a listed bond while the positions are within the skin)."""
        inputs = self.inputs
        valid = inputs.bond_valid
        i, j = inputs.bond_i[valid], inputs.bond_j[valid]
        positions = np.asarray(positions)
        vectors = positions[j] + inputs.bond_shift[valid] @ inputs.cell - positions[i]
        check_min_distance(vectors, i, j, source)


def padded_size(count: int, minimum: int = 256) -> int:
    """`count` rounded up to a multiple of max(minimum, 2^(floor(log2 count) - 2)): at most
    25 % padding beyond `minimum`, and structures of similar size (a vacancy more or less)
    share one shape, so compiled code is reused."""
    step = max(minimum, 2 ** max(int(np.log2(max(count, 1))) - 2, 0))
    return max(step, -(-count // step) * step)


def _padded(arrays: list[np.ndarray], count: int, minimum: int = 256) -> list[np.ndarray]:
    """Arrays (leading axis `count`) zero-padded to `padded_size(count, minimum)`, plus a
    validity mask."""
    size = padded_size(count, minimum)
    out = []
    for a in arrays:
        padded = np.zeros((size,) + a.shape[1:], a.dtype)
        padded[:count] = a
        out.append(padded)
    valid = np.zeros(size, bool)
    valid[:count] = True
    return out + [valid]


def _block_matrix(layout, symmetric: bool) -> np.ndarray:
    """(K, n_i * n_j) matrix of mlh.model.irreps.irreps_to_blocks for one layout (K = irreps size);
    with `symmetric` it also symmetrises, (B + B^T) / 2, as mlh.model.targets.onsite_blocks does."""
    size = int(np.prod(layout.shape))
    blocks = irreps_to_blocks(np.eye(size).reshape(size, *layout.shape), layout)
    if symmetric:
        blocks = 0.5 * (blocks + blocks.transpose(0, 2, 1))
    return blocks.reshape(size, -1)


def _block_groups(codes: np.ndarray, maps: list[tuple[np.ndarray, int]]
                  ) -> tuple[list[_BlockGroup], np.ndarray, int]:
    """One group per code (species or ordered species pair), items padded by `padded_size`
    (padding repeats item 0; its blocks are never gathered).

    Args:
        codes: (n_items,) code of each item.
        maps: per code, its (K, size) irreps-to-block matrix and the block size.

    Returns:
        The groups, (n_items,) start of each item's block in the concatenated flattened
        group outputs, and their total length.
    """
    groups, start, offset = [], np.empty(len(codes), np.int64), 0
    for code, (matrix, size) in enumerate(maps):
        members = np.flatnonzero(codes == code)
        items = np.zeros(padded_size(len(members)), np.int64)
        items[:len(members)] = members
        groups.append(_BlockGroup(items, matrix))
        start[members] = offset + np.arange(len(members)) * size
        offset += len(items) * size
    return groups, start, offset


def _index_in(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Row index in `keys` (P, d) of each row of `queries` (Q, d), -1 where absent."""
    _, inverse = np.unique(np.concatenate([keys, queries]), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    position = np.full(inverse.max(initial=-1) + 1, -1, np.int64)
    position[inverse[:len(keys)]] = np.arange(len(keys))
    return position[inverse[len(keys):]]


def _block_offsets(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def hamiltonian_topology(
    predictor: Predictor,
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    numbers: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
    skin: float = 0.0,
    source: str = "structure",
) -> HamiltonianTopology:
    """Fix the edges, bonds and block maps of the predicted H for a structure (numpy; not
    jittable).

    Args:
        predictor: the model.
        positions: (n_atoms, 3) positions (Å), wrapped as the pair list's shifts assume
            (mlh.gpaw.overlap.wrapped_positions for GPAW-style records).
        cell: (3, 3) lattice vectors as rows (Å); pbc: (3,) periodic directions.
        numbers: (n_atoms,) atomic numbers.
        pairs: (pair_i, pair_j, pair_shift) the record-layout pair list H is returned in;
            it must contain every model bond within the bond cutoff + skin.
        skin: extra reach of edges and bonds (Å), >= 0.
        source: name of the structure for error messages.

    Raises:
        MLHError: species the model lacks, atoms closer than 0.5 Å, a negative skin, or a
            model bond missing from `pairs`.
    """
    if skin < 0:
        raise MLHError(f"skin must be >= 0 Å, got {skin}")
    layouts = predictor.layouts
    species = layouts.species_index(numbers, source)
    positions = np.asarray(positions, float)
    cell = np.asarray(cell, float)
    graph = build_graph(species, positions, cell, pbc, predictor.atom_cutoff + skin,
                        predictor.bond_cutoff + skin, source)

    image = graph.edge_vector - positions[graph.edge_neighbor] + positions[graph.edge_center]
    edge_shift = np.rint(image @ np.linalg.pinv(cell)).astype(np.int64)
    center, neighbor, edge_shift, edge_valid = _padded(
        [graph.edge_center, graph.edge_neighbor, edge_shift], graph.n_edges)
    padded_species = _padded([species], len(species), minimum=16)[0]
    bond_i, bond_j, bond_shift, bond_valid = _padded(
        [graph.bond_i, graph.bond_j, graph.bond_shift], graph.n_bonds)

    # Blocks from irreps: one group per species (on-site) and per ordered species pair
    # (bonds), every group present and padded, so the shapes depend little on the structure.
    n_species = layouts.n_species
    counts = np.array([layouts.n_orbitals(int(s)) for s in species])
    onsite_groups, onsite_start, n_onsite_flat = _block_groups(
        species, [(_block_matrix(layouts.onsite_layout(a), True), layouts.n_orbitals(a) ** 2)
                  for a in range(n_species)])
    sizes = counts**2
    local = np.arange(sizes.sum()) - np.repeat(_block_offsets(sizes)[:-1], sizes)
    onsite_gather = np.repeat(onsite_start, sizes) + local
    pair_groups, bond_start, zero = _block_groups(
        species[graph.bond_i] * n_species + species[graph.bond_j],
        [(_block_matrix(layouts.pair_layout(a, b), False),
          layouts.n_orbitals(a) * layouts.n_orbitals(b))
         for a in range(n_species) for b in range(n_species)])
    pair_i, pair_j, pair_shift = (np.asarray(p, np.int64) for p in pairs)
    pair_of_bond = _index_in(np.column_stack([pair_i, pair_j, pair_shift]),
                             np.column_stack([graph.bond_i, graph.bond_j, graph.bond_shift]))
    if np.any(pair_of_bond < 0):
        raise MLHError(f"{int(np.sum(pair_of_bond < 0))} model bonds are not in the given "
                       f"pair list")
    start = np.full(len(pair_i), -1, np.int64)
    start[pair_of_bond] = bond_start
    sizes = counts[pair_i] * counts[pair_j]
    local = np.arange(sizes.sum()) - np.repeat(_block_offsets(sizes)[:-1], sizes)
    value_start = np.repeat(start, sizes)
    pair_gather = np.where(value_start >= 0, value_start + local, zero)

    inputs = ModelInputs(
        cell=cell, species=padded_species.astype(np.int32), edge_center=center.astype(np.int32),
        edge_neighbor=neighbor.astype(np.int32), edge_shift=edge_shift, edge_valid=edge_valid,
        bond_i=bond_i.astype(np.int32), bond_j=bond_j.astype(np.int32), bond_shift=bond_shift,
        bond_valid=bond_valid, onsite_groups=tuple(onsite_groups),
        pair_groups=tuple(pair_groups))
    return HamiltonianTopology(
        positions=positions, inputs=inputs, pair_gather=pair_gather.astype(np.int64),
        onsite_gather=onsite_gather.astype(np.int64), n_pair_flat=int(zero),
        n_onsite_flat=int(n_onsite_flat), skin=float(skin))


class ModelHamiltonian:
    """A predictor's H(R) blocks as a differentiable function of the positions: H itself
    for a direct model, dH = H - H0 for a correction model (the caller adds H0).

    `apply(params, tables, positions, inputs)` returns the flat pair-group and on-site-group
    blocks (eV) for padded positions (N, 3) in Å (`HamiltonianTopology.padded_positions`
    of positions moved continuously from `topology.positions`) and `inputs` =
    `topology.inputs`, and the potential levels (N,) in eV of a model with `atom_potential`
    (else None); `topology.record_blocks` turns the blocks into H_pair, H_onsite of the
    record layout, to which the caller adds the potential term with S
    (mlh.model.atom_potential). A pure jax.numpy function: jit it or compose it with other
    transforms.

    Attributes:
        predictor: the model.
        params, tables: its parameters and output tables in float64 (jax arrays).
        apply: the function above.
    """

    def __init__(self, predictor: Predictor):
        """Raises MLHError for a model with message passing (its attention normalises over
        the neighbours in the cutoff sphere, which is not smooth as atoms cross it)."""
        if predictor.config.atom_centered.message_passing.steps > 0:
            raise MLHError("the band route needs a model without message passing (its "
                           "attention over the cutoff sphere is not smooth in the positions)")
        self.predictor = predictor
        kernel = predictor.kernel
        with jax.enable_x64(True):
            self.params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64),
                                                 predictor.params)
            self.tables = jax.tree_util.tree_map(jnp.asarray, predictor.tables(np.float64))

        def blocks(params, tables, positions, topology: ModelInputs):
            require_x64("physics.band.model_hamiltonian")
            cell = topology.cell
            edge = (positions[topology.edge_neighbor] + topology.edge_shift @ cell
                    - positions[topology.edge_center])
            bond = (positions[topology.bond_j] + topology.bond_shift @ cell
                    - positions[topology.bond_i])
            onsite, offsite, potential = kernel.graph(
                params, tables, topology.species, topology.edge_center, topology.edge_neighbor,
                far_vectors(edge, topology.edge_valid, jnp), topology.bond_i, topology.bond_j,
                far_vectors(bond, topology.bond_valid, jnp))
            onsite = onsite.reshape(onsite.shape[0], -1)
            offsite = offsite.reshape(offsite.shape[0], -1)
            onsite_flat = jnp.concatenate(
                [(onsite[g.items] @ g.matrix).ravel() for g in topology.onsite_groups])
            pair_flat = jnp.concatenate(
                [(offsite[g.items] @ g.matrix).ravel() for g in topology.pair_groups])
            return pair_flat, onsite_flat, potential

        self.apply = blocks
