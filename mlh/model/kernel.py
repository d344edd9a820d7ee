"""The network applied to a structure graph: the one evaluation that training, inference
and the band route share.

`ModelKernel` wraps a predictor's flax model in pure functions of (params, tables, arrays):
descriptors of centre atoms, on-site irreps, pair irreps, per-atom potential levels (models
with `atom_potential`), and the whole graph. Training
(`mlh.train.loop`) calls the whole graph on padded batches; inference
(`mlh.inference.prediction`) jit-compiles the three stages and runs them over chunks of
atoms and bonds in float32; the band route (`physics.band.model_hamiltonian`) calls the whole
graph in float64 inside jax.grad. Padding edges and bonds point at `PAD_DISTANCE`
(`far_vectors`), beyond every cutoff, so they contribute exactly zero. Irreps in eV,
vectors in Å.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlh.model.graph import PAD_DISTANCE

__all__ = ["FAR_VECTOR", "far_vectors", "ModelKernel", "EnsembleKernel"]

FAR_VECTOR = (PAD_DISTANCE, 0.0, 0.0)
"""The edge or bond vector (Å) of padding entries."""


def far_vectors(vectors: Any, valid: Any, xp: Any = np) -> Any:
    """(n, 3) vectors (Å) with the rows where `valid` is False replaced by `FAR_VECTOR`
    (xp: numpy or jax.numpy)."""
    return xp.where(valid[:, None], vectors, xp.asarray(FAR_VECTOR, dtype=vectors.dtype))


@dataclass(frozen=True, eq=False)
class ModelKernel:
    """Pure functions of a GEARS H model (`mlh.model.nn.model.GearsH`).

    Attributes:
        model: the flax module (its parameters are passed to every call).
    """

    model: Any

    def descriptors(self, params: Any, center_species: Any, neighbor_species: Any,
                    edge_center: Any, edge_neighbor: Any, edge_vector: Any) -> Any:
        """Descriptors (Nc, 2, L, F) of centre atoms from their edges (GearsH.descriptors)."""
        return self.model.apply(params, center_species, neighbor_species, edge_center,
                                edge_neighbor, edge_vector, method=self.model.descriptors)

    def onsite(self, params: Any, tables: Any, descriptors: Any, species: Any) -> Any:
        """On-site irreps (N, 2, L, F) in eV of atoms with these descriptors."""
        return self.model.apply(params, descriptors, species, tables, method=self.model.onsite)

    def potential(self, params: Any, descriptors: Any) -> Any:
        """Potential levels (N,) in eV of atoms with these descriptors (models with
        config.atom_potential; mlh.model.atom_potential applies them)."""
        return self.model.apply(params, descriptors, method=self.model.potential)

    def pairs(self, params: Any, tables: Any, descriptor_i: Any, descriptor_j: Any,
              species_i: Any, species_j: Any, vector: Any) -> Any:
        """Pair irreps (B, 2, L, F) in eV of bonds i -> j with vectors (B, 3) in Å."""
        return self.model.apply(params, descriptor_i, descriptor_j, species_i, species_j, vector,
                                tables, method=self.model.offsite)

    def graph(self, params: Any, tables: Any, species: Any, edge_center: Any,
              edge_neighbor: Any, edge_vector: Any, bond_i: Any, bond_j: Any,
              bond_vector: Any) -> tuple[Any, Any, Any]:
        """On-site irreps (N, 2, L, F), pair irreps (B, 2, L, F) and potential levels (N,)
        or None, eV, of a whole graph (edges and bonds index its atoms; GearsH.__call__: the
        stages above)."""
        return self.model.apply(params, species, edge_center, edge_neighbor, edge_vector,
                                bond_i, bond_j, bond_vector, tables)


@dataclass(frozen=True, eq=False)
class EnsembleKernel(ModelKernel):
    """ModelKernel of a committee: parameters and tables carry a leading member axis, the
    descriptors a member axis after the atom axis (so that chunking and gathering over
    atoms work unchanged), and the outputs are the members' mean (eV)."""

    def descriptors(self, params: Any, center_species: Any, neighbor_species: Any,
                    edge_center: Any, edge_neighbor: Any, edge_vector: Any) -> Any:
        import jax

        member = super().descriptors
        return jax.vmap(member, in_axes=(0, None, None, None, None, None), out_axes=1)(
            params, center_species, neighbor_species, edge_center, edge_neighbor, edge_vector)

    def onsite(self, params: Any, tables: Any, descriptors: Any, species: Any) -> Any:
        import jax

        return jax.vmap(super().onsite, in_axes=(0, 0, 1, None))(
            params, tables, descriptors, species).mean(axis=0)

    def potential(self, params: Any, descriptors: Any) -> Any:
        import jax

        return jax.vmap(super().potential, in_axes=(0, 1))(params, descriptors).mean(axis=0)

    def pairs(self, params: Any, tables: Any, descriptor_i: Any, descriptor_j: Any,
              species_i: Any, species_j: Any, vector: Any) -> Any:
        import jax

        return jax.vmap(super().pairs, in_axes=(0, 0, 1, 1, None, None, None))(
            params, tables, descriptor_i, descriptor_j, species_i, species_j, vector).mean(axis=0)

    def graph(self, params: Any, tables: Any, species: Any, edge_center: Any,
              edge_neighbor: Any, edge_vector: Any, bond_i: Any, bond_j: Any,
              bond_vector: Any) -> tuple[Any, Any, Any]:
        import jax

        outputs = jax.vmap(super().graph, in_axes=(0, 0, *[None] * 7))(
            params, tables, species, edge_center, edge_neighbor, edge_vector, bond_i, bond_j,
            bond_vector)
        return jax.tree_util.tree_map(lambda x: x.mean(axis=0), outputs)
