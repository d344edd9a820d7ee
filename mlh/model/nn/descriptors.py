"""Atom-centred and bond-centred descriptors of GEARS H (seed 001, S2.1-S2.2). Lengths in Å.

The atom-centred descriptor works on a chunk of centre atoms at a time: it needs only
the edges whose centre is in the chunk, so large structures can be processed in
pieces with bounded memory.
"""

from __future__ import annotations

from functools import partial

import e3x
import flax.linen as nn
import jax.numpy as jnp

from mlh.model.config import AtomCenteredConfig, BondCenteredConfig
from mlh.model.nn.layers import EquivariantLayerNorm, ResidualMLP

__all__ = ["expand", "AtomCentredBodies", "AtomCentredRefine", "BondCentred"]


def expand(vectors: jnp.ndarray, cutoff: float, num: int, max_degree: int) -> jnp.ndarray:
    """Sinusoidal radial functions x real spherical harmonics with a smooth cutoff.

    Args:
        vectors: (..., 3) displacement vectors (Å).
        cutoff: radius where the expansion goes smoothly to zero (Å).
        num: number of radial functions.
        max_degree: largest spherical-harmonic degree.

    Returns:
        (..., 1, (max_degree+1)^2, num) e3x features (M = -L..L order).
    """
    return e3x.nn.basis(
        vectors,
        max_degree=max_degree,
        num=num,
        radial_fn=partial(e3x.nn.basic_fourier, limit=cutoff),
        cutoff_fn=partial(e3x.nn.smooth_cutoff, cutoff=cutoff),
        cartesian_order=False,
    )


class AtomCentredBodies(nn.Module):
    """Pooled 2-body features and their TensorDense products (body orders 2, 3, ...).

    Attributes:
        config: atom-centred hyperparameters.
        n_species: number of species the model knows.
    """

    config: AtomCenteredConfig
    n_species: int

    @nn.compact
    def __call__(
        self,
        center_species: jnp.ndarray,
        neighbor_species: jnp.ndarray,
        edge_center: jnp.ndarray,
        edge_vector: jnp.ndarray,
    ) -> list[jnp.ndarray]:
        """Body-ordered features of the centre atoms.

        Args:
            center_species: (Nc,) species of the centre atoms.
            neighbor_species: (E,) species of each edge's neighbour.
            edge_center: (E,) index into the centre atoms (0..Nc-1).
            edge_vector: (E, 3) neighbour minus centre position (Å); edges longer than
                the cutoff contribute exactly nothing (used for padding).

        Returns:
            One array (Nc, 2, (max_tensordense_degree+1)^2, num_tensordense_features)
            per body order 2 .. 2 + num_tensordenses.
        """
        radial = self.config.radial_basis
        features = self.config.num_tensordense_features
        embed = e3x.nn.Embed(self.n_species, radial.num_elemental_embedding, name="species_embedding")
        basis = expand(edge_vector, radial.cutoff, radial.num_radial, radial.max_degree)
        weights = e3x.nn.Dense(radial.num_radial, name="neighbor_weights")(embed(neighbor_species))
        density = e3x.ops.indexed_sum(
            basis * weights, dst_idx=edge_center, num_segments=center_species.shape[0]
        )
        center = e3x.nn.Dense(features, name="center_weights")(embed(center_species))
        body = e3x.nn.Dense(features, name="two_body")(density) * center
        body = e3x.nn.change_max_degree_or_type(
            body, max_degree=self.config.max_tensordense_degree, include_pseudotensors=True
        )
        body = EquivariantLayerNorm(name="two_body_norm")(body)
        bodies = [body]
        for index in range(self.config.num_tensordenses):
            body = e3x.nn.TensorDense(
                features=features,
                max_degree=self.config.max_tensordense_degree,
                cartesian_order=False,
                use_fused_tensor=self.config.use_fused_tensor,
                name=f"tensor_dense_{index}",
            )(body)
            bodies.append(body)
        return bodies


class AtomCentredRefine(nn.Module):
    """Optional self-attention message passing, then a residual MLP, per body order.

    Attributes:
        config: atom-centred hyperparameters.
        activation: activation of the residual MLPs.
    """

    config: AtomCenteredConfig
    activation: str

    @nn.compact
    def __call__(
        self,
        bodies: list[jnp.ndarray],
        edge_center: jnp.ndarray,
        edge_neighbor: jnp.ndarray,
        edge_vector: jnp.ndarray,
    ) -> jnp.ndarray:
        """Atom-centred descriptors of the atoms of `bodies`.

        Without message passing each atom is refined on its own (the edges are
        unused), so any subset of atoms can be processed alone. With message passing
        `bodies` must hold every atom and the edges all edges.

        Args:
            bodies: body-ordered features (N, 2, L, F) per body order.
            edge_center, edge_neighbor: (E,) atom indices of the edges.
            edge_vector: (E, 3) neighbour minus centre (Å).

        Returns:
            (N, 2, (max_tensordense_degree+1)^2, n_bodies * num_tensordense_features).
        """
        mp = self.config.message_passing
        refined = []
        for order, body in enumerate(bodies):
            x = body
            for step in range(mp.steps):
                basis = expand(
                    edge_vector, self.config.radial_basis.cutoff, mp.basis_num, mp.basis_max_degree
                )
                message = e3x.nn.SelfAttention(
                    max_degree=self.config.max_tensordense_degree,
                    num_heads=mp.num_heads,
                    qkv_features=mp.qkv_features,
                    cartesian_order=False,
                    name=f"attention_{order}_{step}",
                )(x, basis, dst_idx=edge_center, src_idx=edge_neighbor, num_segments=x.shape[0])
                x = EquivariantLayerNorm(name=f"attention_norm_{order}_{step}")(x + message)
            refined.append(ResidualMLP(self.activation, name=f"nonlinear_{order}")(x))
        return jnp.concatenate(refined, axis=-1)


class BondCentred(nn.Module):
    """Bond descriptor: ordered pair of atom descriptors (x) expansion of the bond vector.

    Attributes:
        config: bond-centred hyperparameters.
        features: feature count of the output.
    """

    config: BondCenteredConfig
    features: int

    @nn.compact
    def __call__(self, atom_i: jnp.ndarray, atom_j: jnp.ndarray, vector: jnp.ndarray) -> jnp.ndarray:
        """Features (B, 2, (max_degree+1)^2, features) of oriented pairs i -> j.

        Args:
            atom_i, atom_j: (B, 2, L, F) atom-centred descriptors of the two atoms; the
                order matters (row atom first), so both species and the orientation
                are seen.
            vector: (B, 3) tau_j + R·cell - tau_i (Å).
        """
        pooled = jnp.concatenate([atom_i + atom_j, atom_i - atom_j], axis=-1)
        pooled = e3x.nn.change_max_degree_or_type(pooled, max_degree=self.config.max_degree)
        pooled = e3x.nn.Dense(self.features, name="pool")(pooled)
        pooled = ResidualMLP("mish", name="pooled_mlp")(EquivariantLayerNorm(name="pool_norm")(pooled))
        bond = expand(vector, self.config.cutoff, self.config.expansion_num, self.config.expansion_max_degree)
        bond = e3x.nn.Dense(self.features, name="bond_projection")(bond)
        tensor = e3x.nn.FusedTensor if self.config.use_fused_tensor else e3x.nn.Tensor
        product = tensor(max_degree=self.config.max_degree, cartesian_order=False, name="bond_tensor")(
            pooled, bond
        )
        return pooled + product
