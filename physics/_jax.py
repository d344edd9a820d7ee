"""Small JAX helpers shared by the differentiable physics modules (not public API)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from mlh.errors import MLHError

__all__ = ["register_pytree", "require_x64", "within_skin", "SkinnedTopology"]


def register_pytree(cls, meta: tuple[str, ...] = ()):
    """Register a frozen dataclass as a pytree: fields in `meta` are static, others leaves."""
    fields = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(
        cls, data_fields=[f for f in fields if f not in meta], meta_fields=list(meta))


def require_x64(module: str) -> None:
    """MLHError unless JAX computes in float64 (globally or inside jax.enable_x64(True))."""
    if not jax.config.jax_enable_x64:
        raise MLHError(f'{module} needs float64: run inside jax.enable_x64(True) or call '
                       f'jax.config.update("jax_enable_x64", True) first')


def within_skin(positions, reference, skin: float) -> bool:
    """True while every atom is within skin / 2 of its reference position (Å): a neighbour
    topology built at `reference` with that skin is still exact."""
    shift = np.linalg.norm(np.asarray(positions) - np.asarray(reference), axis=1)
    return bool(shift.max(initial=0.0) <= 0.5 * skin)


class SkinnedTopology:
    """Methods shared by the topologies of the differentiable routes (Hamiltonian, overlap,
    repulsion): built at reference `positions` (n_atoms, 3) Å with an extra reach `skin` Å,
    exact while no atom moved more than skin / 2."""

    positions: np.ndarray
    skin: float

    @property
    def n_atoms(self) -> int:
        return self.positions.shape[0]

    def within_skin(self, positions: np.ndarray) -> bool:
        """True while every atom is within skin / 2 of its reference position (Å)."""
        return within_skin(positions, self.positions, self.skin)
