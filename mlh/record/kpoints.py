"""k-point grids and weights in reduced coordinates (in the spirit of sisl's MonkhorstPack).

The one place where grids are built and given k-points are checked: Monkhorst-Pack grids
(all points, or reduced by time reversal as GPAW's records are), the Γ-centred grids of
the real-space route, and the validation and normalisation of k-points with weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlh.errors import MLHError

__all__ = ["monkhorst_pack", "gamma_centred_grid", "normalised_kpoint_weights", "kpoints_and_weights"]


def monkhorst_pack(size: Sequence[int], time_reversal: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(n_k, 3) reduced Monkhorst-Pack k-points of grid `size` and (n_k,) weights summing to 1.

    With `time_reversal`, k and -k are merged into one point of twice the weight (the
    reduction of GPAW's records; exact for real basis functions).

    Raises:
        MLHError: a size that is not three positive integers.
    """
    from ase.dft.kpoints import monkhorst_pack as ase_monkhorst_pack

    size = np.asarray(size)
    if size.shape != (3,) or size.min() < 1 or np.any(size != np.round(size)):
        raise MLHError(f"a k-point grid needs three positive integers, got {tuple(size)}")
    size = size.astype(int)
    grid = ase_monkhorst_pack(size)
    if not time_reversal:
        return grid, np.full(len(grid), 1.0 / len(grid))
    kept: dict[tuple[int, ...], int] = {}
    kpoints, weights = [], []
    for k in grid:
        key = tuple(np.rint(2 * k * size).astype(int) % (2 * size))
        partner = tuple(np.rint(-2 * k * size).astype(int) % (2 * size))
        if partner in kept:
            weights[kept[partner]] += 1.0
            continue
        kept[key] = len(kpoints)
        kpoints.append(k)
        weights.append(1.0)
    weights = np.asarray(weights)
    return np.asarray(kpoints), weights / weights.sum()


def gamma_centred_grid(grid: np.ndarray) -> np.ndarray:
    """(prod(grid), 3) reduced k-points m / N with m = -(N-1)/2 .. (N-1)/2 (odd N)."""
    axes = [np.arange(n) - (n - 1) // 2 for n in grid]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return mesh / np.asarray(grid)


def normalised_kpoint_weights(kpoints: np.ndarray, kpoint_weights) -> np.ndarray:
    """(n_k,) k-point weights summing to 1 (equal when None); MLHError for bad ones.

    Args:
        kpoints: (n_k, 3) reduced k-points (checked to be finite).
        kpoint_weights: (n_k,) non-negative weights with a positive sum, or None.
    """
    n_k = len(kpoints)
    weights = np.ones(n_k) if kpoint_weights is None else np.asarray(kpoint_weights, dtype=float)
    if weights.shape != (n_k,):
        raise MLHError(f"{weights.shape} k-point weights for {n_k} k-points")
    if not (np.isfinite(kpoints).all() and np.isfinite(weights).all()):
        raise MLHError("k-points or k-point weights are not finite")
    if weights.min() < 0 or weights.sum() <= 0:
        raise MLHError("k-point weights must be non-negative with a positive sum")
    return weights / weights.sum()


def kpoints_and_weights(
    kpoints: np.ndarray | None, kpoint_weights: np.ndarray | None, n_k: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validated (n_k, 3) reduced k-points and weights normalised to sum 1.

    No k-points means Γ alone (weights must then be None too). `n_k`, when given, is the
    number of k-point matrices the k-points belong to, and must match.

    Raises:
        MLHError: weights without k-points, a shape other than (n, 3) with n >= 1, a count
            other than `n_k`, or bad weights (normalised_kpoint_weights).
    """
    if kpoints is None:
        if kpoint_weights is not None:
            raise MLHError("k-point weights given without k-points")
        if n_k not in (None, 1):
            raise MLHError(f"{n_k} k-point matrices given without their k-points")
        return np.zeros((1, 3)), np.ones(1)
    kpoints = np.asarray(kpoints, dtype=float)
    if n_k is not None:
        kpoints = kpoints.reshape(-1, 3) if kpoints.size else np.zeros((0, 3))
        if len(kpoints) != n_k:
            raise MLHError(f"{len(kpoints)} k-points for {n_k} k-point matrices")
    elif kpoints.ndim != 2 or kpoints.shape[1] != 3 or len(kpoints) == 0:
        raise MLHError(f"k-points must have shape (n_kpoints, 3), got {kpoints.shape}")
    return kpoints, normalised_kpoint_weights(kpoints, kpoint_weights)
