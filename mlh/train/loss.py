"""Loss of GEARS H (seed 001, S3.6): weighted MSE + RMSE on the stored irreps entries (eV).

loss = multiplier * sum_kind w_kind * (mse_weight * MSE_kind + rmse_weight * RMSE_kind)
over kind = on-site, off-site, each averaged over the stored (masked) irreps entries of
real (non-padding) atoms or bonds. The irreps transform is orthogonal, so the MSE equals
the MSE of the matrix elements of the stored blocks.
"""

from __future__ import annotations

import jax.numpy as jnp

from mlh.model.config import LossConfig
from mlh.model.nn.model import OutputTables
from mlh.train.data import Batch

__all__ = ["masked_mse", "irreps_loss"]


def masked_mse(prediction: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Mean of squared differences over entries where mask is 1 (0 if there are none)."""
    n = prediction.shape[0]
    squared = ((prediction.reshape(n, -1) - target.reshape(n, -1)) ** 2) * mask
    return squared.sum() / jnp.maximum(mask.sum(), 1.0)


def irreps_loss(
    onsite: jnp.ndarray,
    offsite: jnp.ndarray,
    batch: Batch,
    tables: OutputTables,
    config: LossConfig,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Scalar loss and its parts (mse_onsite, mse_offsite) for one batch."""
    species = batch.species
    mask_on = tables.onsite_mask[species] * batch.atom_mask[:, None]
    mask_off = tables.offsite_mask[species[batch.bond_i], species[batch.bond_j]] * batch.bond_mask[:, None]
    mse_on = masked_mse(onsite, batch.onsite_target, mask_on)
    mse_off = masked_mse(offsite, batch.offsite_target, mask_off)

    def part(mse):
        return config.mse_weight * mse + config.rmse_weight * jnp.sqrt(mse + 1e-20)

    loss = config.loss_multiplier * (
        config.on_diagonal_weight * part(mse_on) + config.off_diagonal_weight * part(mse_off)
    )
    return loss, {"mse_onsite": mse_on, "mse_offsite": mse_off}
