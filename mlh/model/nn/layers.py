"""Small equivariant building blocks: per-item layer norm, residual MLPs, a smooth switch.

All act on e3x feature arrays (..., P, (L+1)^2, F) and normalise each item (atom or
pair) on its own, never across a batch, so padding and other structures cannot change
an item's output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import e3x
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

__all__ = ["EquivariantLayerNorm", "ResidualMLP", "ResidualDense", "ACTIVATIONS", "smooth_switch"]

ACTIVATIONS: dict[str, Callable] = {
    "bent_identity": e3x.nn.bent_identity,
    "mish": e3x.nn.mish,
    "silu": e3x.nn.silu,
    "gelu": e3x.nn.gelu,
}

_EPSILON = 1e-6


def _degree_matrix(n_components: int) -> np.ndarray:
    """(n_components, n_degrees) one-hot map from component L^2+L+M to its degree L."""
    degrees = np.floor(np.sqrt(np.arange(n_components))).astype(int)
    return np.eye(degrees.max() + 1)[degrees]


class EquivariantLayerNorm(nn.Module):
    """Layer norm of one item's features, equivariant under rotations.

    Even scalars get an ordinary layer norm over the features; all other channels
    together are divided by one root-mean-square norm (one per item: a separate norm
    per channel would amplify channels that are zero up to rounding). A learned scale
    per (parity, degree, feature) follows, and a learned bias on the even scalars.
    """

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        n_parity, n_components, n_features = x.shape[-3:]
        to_degree = jnp.asarray(_degree_matrix(n_components), x.dtype)
        scalars = x[..., 0:1, 0:1, :]
        centred = scalars - scalars.mean(axis=-1, keepdims=True)
        scalars = centred / jnp.sqrt((centred**2).mean(axis=-1, keepdims=True) + _EPSILON)
        nonscalar = x.at[..., 0, 0, :].set(0.0)
        n_channels = n_parity * to_degree.shape[1] - 1
        squared = (nonscalar**2).sum(axis=(-3, -2, -1), keepdims=True) / (n_features * max(n_channels, 1))
        normalised = nonscalar / jnp.sqrt(squared + _EPSILON)
        normalised = normalised.at[..., 0:1, 0:1, :].set(scalars)
        scale = self.param("scale", nn.initializers.ones, (n_parity, to_degree.shape[1], n_features))
        bias = self.param("bias", nn.initializers.zeros, (n_features,))
        out = normalised * jnp.einsum("pdf,cd->pcf", scale, to_degree).astype(x.dtype)
        return out.at[..., 0, 0, :].add(bias.astype(x.dtype))


class ResidualMLP(nn.Module):
    """x + Dense(act(Dense(LayerNorm(x)))) repeated `depth` times (GEARS H non-linear block).

    Attributes:
        activation: name in ACTIVATIONS.
        depth: number of hidden layers.
    """

    activation: str = "bent_identity"
    depth: int = 2

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        act = ACTIVATIONS[self.activation]
        features = x.shape[-1]
        y = EquivariantLayerNorm()(x)
        for _ in range(self.depth):
            y = act(e3x.nn.Dense(features)(y))
        return x + e3x.nn.Dense(features)(y)


class ResidualDense(nn.Module):
    """Residual dense block (S2.3): Dense layers of `widths` with a projected skip connection.

    Attributes:
        widths: feature counts of the dense layers; the output has widths[-1] features.
        activation: name in ACTIVATIONS.
    """

    widths: Sequence[int]
    activation: str = "bent_identity"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        act = ACTIVATIONS[self.activation]
        y = x
        for width in self.widths:
            y = act(e3x.nn.Dense(width)(y))
        return e3x.nn.Dense(self.widths[-1], use_bias=False)(x) + y


def smooth_switch(distance: jnp.ndarray, cutoff: float, width: float) -> jnp.ndarray:
    """1 below cutoff - width, 0 beyond cutoff, C2-smooth (quintic smoothstep) in between."""
    x = jnp.clip((cutoff - distance) / width, 0.0, 1.0)
    return x**3 * (x * (6.0 * x - 15.0) + 10.0)
