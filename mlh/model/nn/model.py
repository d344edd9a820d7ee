"""The GEARS H model: descriptors, residual dense block, readouts, scale-shift, symmetry.

Outputs are irreps arrays in the padded layouts of `mlh.model.layouts.OutputLayouts`
(eV). Each unordered pair is predicted from both orientations and combined as
H_ij(R) = (f(i, j, R) + f(j, i, -R)^T) / 2, and on-site blocks as (f + f^T) / 2, so
H_ji(-R) = H_ij(R)^T and symmetric on-site blocks hold exactly, whatever the atom
order. Non-learned scale-shift of the even scalars (per species on-site; per species
pair and distance off-site) comes from `OutputTables`, fitted by `mlh.model.scale_shift`.
Pair outputs go smoothly to zero over the last `SWITCH_WIDTH` Å before the bond cutoff.
With `config.atom_potential` the model also gives one invariant potential level u_a (eV) per
atom from its even scalar features, which `mlh.model.atom_potential` applies through S.
"""

from __future__ import annotations

from typing import NamedTuple

import e3x
import flax.linen as nn
import jax.numpy as jnp

from mlh.model.config import ModelConfig
from mlh.model.nn.descriptors import AtomCentredBodies, AtomCentredRefine, BondCentred
from mlh.model.nn.layers import ResidualDense, smooth_switch
from mlh.model.scale_shift import gaussian_basis

__all__ = ["SWITCH_WIDTH", "POTENTIAL_UNIT", "OutputTables", "GearsH"]

SWITCH_WIDTH = 1.0
"""Width (Å) of the region below the bond cutoff where pair outputs switch off."""

POTENTIAL_UNIT = 0.1
"""Scale (eV) of the raw per-atom potential output; its readout starts at zero, so a new
model with the potential predicts what one without it does."""


class OutputTables(NamedTuple):
    """Per-species constant tables the model gathers from (K = 2 (L+1)^2 F, flattened irreps).

    Attributes:
        onsite_mask: (S, K) 1 where a species' on-site irreps entry is stored, else 0.
        onsite_index, onsite_sign: (S, K) signed permutation giving irreps of H^T.
        onsite_scale, onsite_shift: (S, K) scale and shift (eV) of raw on-site outputs.
        offsite_mask: (S, S, K) as onsite_mask for ordered species pairs.
        offsite_index, offsite_sign: (S, S, K) irreps of H_ba^T in layout ab from layout ba.
        offsite_scale: (S, S, K) scale of raw pair outputs (eV).
        offsite_shift: (S, S, K, M) coefficients of the distance-dependent shift (eV).
        shift_centres: (M,) centres of the Gaussian shift basis (Å).
        shift_width: () width of the Gaussian shift basis (Å).
    """

    onsite_mask: jnp.ndarray
    onsite_index: jnp.ndarray
    onsite_sign: jnp.ndarray
    onsite_scale: jnp.ndarray
    onsite_shift: jnp.ndarray
    offsite_mask: jnp.ndarray
    offsite_index: jnp.ndarray
    offsite_sign: jnp.ndarray
    offsite_scale: jnp.ndarray
    offsite_shift: jnp.ndarray
    shift_centres: jnp.ndarray
    shift_width: jnp.ndarray


def _transpose(x: jnp.ndarray, index: jnp.ndarray, sign: jnp.ndarray) -> jnp.ndarray:
    """Irreps of the transposed blocks: sign * x[index] per row, x (B, K)."""
    return sign.astype(x.dtype) * jnp.take_along_axis(x, index, axis=-1)


class GearsH(nn.Module):
    """GEARS H Hamiltonian predictor (seed 001, S2).

    Attributes:
        config: model hyperparameters.
        n_species: number of species (indices 0..n_species-1).
        onsite_shape, offsite_shape: (2, (L+1)^2, F) of the on-site / pair irreps.
    """

    config: ModelConfig
    n_species: int
    onsite_shape: tuple[int, int, int]
    offsite_shape: tuple[int, int, int]

    def setup(self) -> None:
        config = self.config
        atom = config.atom_centered
        self.bodies = AtomCentredBodies(atom, self.n_species)
        self.refine = AtomCentredRefine(atom, config.mlp.activation)
        width = config.mlp.layer_widths[0]
        self.bond = BondCentred(config.bond_centered, width)
        self.atom_projection = e3x.nn.Dense(width)
        self.dense = ResidualDense(tuple(config.mlp.layer_widths), config.mlp.activation)
        self.onsite_readout = e3x.nn.TensorDense(
            features=self.onsite_shape[2],
            max_degree=int(round(self.onsite_shape[1] ** 0.5)) - 1,
            cartesian_order=False,
        )
        self.offsite_readout = e3x.nn.TensorDense(
            features=self.offsite_shape[2],
            max_degree=int(round(self.offsite_shape[1] ** 0.5)) - 1,
            cartesian_order=False,
        )
        if config.atom_potential:
            self.potential_readout = nn.Dense(1, kernel_init=nn.initializers.zeros)

    def atom_descriptors(
        self,
        species: jnp.ndarray,
        edge_center: jnp.ndarray,
        edge_neighbor: jnp.ndarray,
        edge_vector: jnp.ndarray,
    ) -> jnp.ndarray:
        """Atom-centred descriptors (N, 2, L, F) of all atoms of a graph (edges: global indices)."""
        return self.descriptors(species, species[edge_neighbor], edge_center, edge_neighbor, edge_vector)

    def descriptors(
        self,
        center_species: jnp.ndarray,
        neighbor_species: jnp.ndarray,
        edge_center: jnp.ndarray,
        edge_neighbor: jnp.ndarray,
        edge_vector: jnp.ndarray,
    ) -> jnp.ndarray:
        """Descriptors (Nc, 2, L, F) of the centre atoms of a graph or of a chunk of one.

        edge_center indexes the centre atoms (0..Nc-1), neighbor_species gives each edge's
        neighbour; edge_neighbor (same indexing as edge_center) is read only by message
        passing, so a chunk of centre atoms may pass edge_center there when it has none.
        """
        bodies = self.bodies(center_species, neighbor_species, edge_center, edge_vector)
        return self.refine(bodies, edge_center, edge_neighbor, edge_vector)

    def atom_features(self, descriptors: jnp.ndarray) -> jnp.ndarray:
        """Features (N, 2, L, W) of atoms for their readouts (projection, residual block)."""
        return self.dense(self.atom_projection(descriptors))

    def onsite(self, descriptors: jnp.ndarray, species: jnp.ndarray, tables: OutputTables) -> jnp.ndarray:
        """Symmetric on-site irreps (N, 2, L, F) in eV."""
        return self._onsite_irreps(self.atom_features(descriptors), species, tables)

    def potential(self, descriptors: jnp.ndarray) -> jnp.ndarray:
        """Potential level u (N,) in eV of atoms (models with config.atom_potential)."""
        return self._potential(self.atom_features(descriptors))

    def _potential(self, features: jnp.ndarray) -> jnp.ndarray:
        return POTENTIAL_UNIT * self.potential_readout(features[:, 0, 0, :])[:, 0]

    def _onsite_irreps(self, features: jnp.ndarray, species: jnp.ndarray, tables: OutputTables) -> jnp.ndarray:
        x = self.onsite_readout(features)
        x = x.reshape(x.shape[0], -1)
        x = x * tables.onsite_scale[species] + tables.onsite_shift[species]
        x = 0.5 * (x + _transpose(x, tables.onsite_index[species], tables.onsite_sign[species]))
        x = x * tables.onsite_mask[species]
        return x.reshape(-1, *self.onsite_shape)

    def offsite(
        self,
        descriptor_i: jnp.ndarray,
        descriptor_j: jnp.ndarray,
        species_i: jnp.ndarray,
        species_j: jnp.ndarray,
        vector: jnp.ndarray,
        tables: OutputTables,
    ) -> jnp.ndarray:
        """Pair irreps (B, 2, L, F) in eV of pairs i -> j (layout of species_i, species_j).

        Args:
            descriptor_i, descriptor_j: (B, 2, L, F) atom descriptors of the two atoms.
            species_i, species_j: (B,) species.
            vector: (B, 3) tau_j + R·cell - tau_i (Å).
            tables: constant tables.
        """
        n = vector.shape[0]
        both = self.bond(
            jnp.concatenate([descriptor_i, descriptor_j]),
            jnp.concatenate([descriptor_j, descriptor_i]),
            jnp.concatenate([vector, -vector]),
        )
        raw = self.offsite_readout(self.dense(both)).reshape(2 * n, -1)
        row = jnp.concatenate([species_i, species_j])
        col = jnp.concatenate([species_j, species_i])
        distance = jnp.linalg.norm(jnp.concatenate([vector, vector]), axis=-1)
        shift = jnp.einsum(
            "bkm,bm->bk",
            tables.offsite_shift[row, col],
            gaussian_basis(distance, tables.shift_centres, tables.shift_width, xp=jnp).astype(raw.dtype),
        )
        scaled = raw * tables.offsite_scale[row, col] + shift
        forward, backward = scaled[:n], scaled[n:]
        pair = 0.5 * (
            forward
            + _transpose(backward, tables.offsite_index[species_i, species_j], tables.offsite_sign[species_i, species_j])
        )
        cutoff = self.config.bond_centered.cutoff
        pair = pair * smooth_switch(distance[:n], cutoff, SWITCH_WIDTH)[:, None]
        pair = pair * tables.offsite_mask[species_i, species_j]
        return pair.reshape(n, *self.offsite_shape)

    def __call__(
        self,
        species: jnp.ndarray,
        edge_center: jnp.ndarray,
        edge_neighbor: jnp.ndarray,
        edge_vector: jnp.ndarray,
        bond_i: jnp.ndarray,
        bond_j: jnp.ndarray,
        bond_vector: jnp.ndarray,
        tables: OutputTables,
    ) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray | None]:
        """On-site irreps (N, 2, L, F), pair irreps (B, 2, L, F) and the potential levels
        (N,) (None without config.atom_potential), eV, of one (batched) graph."""
        descriptors = self.atom_descriptors(species, edge_center, edge_neighbor, edge_vector)
        features = self.atom_features(descriptors)
        onsite = self._onsite_irreps(features, species, tables)
        offsite = self.offsite(
            descriptors[bond_i], descriptors[bond_j], species[bond_i], species[bond_j], bond_vector, tables
        )
        potential = self._potential(features) if self.config.atom_potential else None
        return onsite, offsite, potential
