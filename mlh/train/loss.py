"""Loss of GEARS H (seed 001, S3.6): weighted MSE + RMSE on the stored irreps entries (eV).

loss = multiplier * sum_kind w_kind * (mse_weight * MSE_kind + rmse_weight * RMSE_kind)
over kind = on-site, off-site, each averaged over the stored (masked) irreps entries of
real (non-padding) atoms or bonds. The irreps transform is orthogonal, so the MSE equals
the MSE of the matrix elements of the stored blocks.

With `gauge_invariant`, the target of each structure is first moved by c·S, with c (eV) the
closed-form least-squares shift of the prediction onto the target over that structure's
masked elements (on-site and off-site together, as mlh.inference.metrics.gauge_shift):
H and H + c·S have the same states, and this loss does not see the difference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mlh.model.config import LossConfig
from mlh.model.nn.model import OutputTables
from mlh.train.data import Batch

__all__ = ["masked_mse", "gauge_shifts", "irreps_loss"]


def masked_mse(prediction: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Mean of squared differences over entries where mask is 1 (0 if there are none)."""
    n = prediction.shape[0]
    squared = ((prediction.reshape(n, -1) - target.reshape(n, -1)) ** 2) * mask
    return squared.sum() / jnp.maximum(mask.sum(), 1.0)


def gauge_shifts(
    residuals: tuple[jnp.ndarray, jnp.ndarray],
    overlaps: tuple[jnp.ndarray, jnp.ndarray],
    masks: tuple[jnp.ndarray, jnp.ndarray],
    structures: tuple[jnp.ndarray, jnp.ndarray],
) -> jnp.ndarray:
    """Per-structure c (eV) minimising sum |residual - c S|^2 over the masked entries.

    Args:
        residuals: on-site (Na, ...) and off-site (Nb, ...) prediction - target irreps.
        overlaps: S in the same layouts.
        masks: (Na, E) and (Nb, E) stored entries of real atoms and bonds.
        structures: (Na,) and (Nb,) structure index of each atom and bond, < Na.

    Returns:
        (Na,) c per structure index (0 for indices without stored S).
    """
    n = structures[0].shape[0]
    numerator = jnp.zeros(n)
    denominator = jnp.zeros(n)
    for residual, overlap, mask, structure in zip(residuals, overlaps, masks, structures):
        rows = residual.shape[0]
        s = overlap.reshape(rows, -1) * mask
        numerator += jax.ops.segment_sum((residual.reshape(rows, -1) * s).sum(-1), structure, n)
        denominator += jax.ops.segment_sum((s * s).sum(-1), structure, n)
    return numerator / jnp.where(denominator > 0, denominator, 1.0)


def irreps_loss(
    onsite: jnp.ndarray,
    offsite: jnp.ndarray,
    batch: Batch,
    tables: OutputTables,
    config: LossConfig,
) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
    """Scalar loss and its parts (mse_onsite, mse_offsite) for one batch.

    The gauge-invariant loss needs the batch's overlap irreps (samples made with overlap).
    """
    species = batch.species
    mask_on = tables.onsite_mask[species] * batch.atom_mask[:, None]
    mask_off = tables.offsite_mask[species[batch.bond_i], species[batch.bond_j]] * batch.bond_mask[:, None]
    target_on, target_off = batch.onsite_target, batch.offsite_target
    if config.gauge_invariant:
        if batch.onsite_overlap is None:
            raise ValueError("the gauge-invariant loss needs batches with overlap irreps")
        bond_structure = batch.atom_structure[batch.bond_i]
        c = gauge_shifts(
            (onsite - target_on, offsite - target_off),
            (batch.onsite_overlap, batch.offsite_overlap),
            (mask_on, mask_off),
            (batch.atom_structure, bond_structure),
        )
        target_on = target_on + _broadcast(c[batch.atom_structure], target_on) * batch.onsite_overlap
        target_off = target_off + _broadcast(c[bond_structure], target_off) * batch.offsite_overlap
    mse_on = masked_mse(onsite, target_on, mask_on)
    mse_off = masked_mse(offsite, target_off, mask_off)

    def part(mse):
        return config.mse_weight * mse + config.rmse_weight * jnp.sqrt(mse + 1e-20)

    loss = config.loss_multiplier * (
        config.on_diagonal_weight * part(mse_on) + config.off_diagonal_weight * part(mse_off)
    )
    return loss, {"mse_onsite": mse_on, "mse_offsite": mse_off}


def _broadcast(values: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
    """(n,) values shaped to multiply arrays like `like` (n, ...) row by row."""
    return values.reshape(values.shape + (1,) * (like.ndim - 1))
