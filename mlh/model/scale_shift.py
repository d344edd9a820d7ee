"""Non-learned scale-shift statistics of the even scalars (seed 001, S2.5), fitted from data.

On-site: mean and standard deviation of every even-scalar irreps entry per species.
Off-site: per ordered species pair, a shift that depends on the pair distance d,
shift(d) = sum_m c_m exp(-((d - d_m)/w)^2) (ridge least squares on Gaussians spaced
`SHIFT_SPACING` Å apart up to the bond cutoff), and the standard deviation of the
residual as scale. Every other irreps entry has scale 1 and shift 0. Energies in eV,
lengths in Å. Stored as NetCDF beside the data (`mlh analyze`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.model.layouts import OutputLayouts

__all__ = ["SHIFT_SPACING", "ScaleShift", "gaussian_basis", "fit_scale_shift", "write_scale_shift", "read_scale_shift"]

SHIFT_SPACING = 0.5
"""Spacing and width (Å) of the Gaussians of the distance-dependent off-site shift."""

_RIDGE = 1e-6
_MIN_SCALE = 1e-4


def gaussian_basis(distance, centres, width, xp=np):
    """Gaussians exp(-((d - c_m) / w)^2), shape (..., M), of distances (...,) in Å.

    `xp` is the array module (numpy here, jax.numpy inside the model).
    """
    return xp.exp(-(((distance[..., None] - centres) / width) ** 2))


@dataclass(frozen=True)
class ScaleShift:
    """Scale-shift tables (float64, flattened irreps index K).

    Attributes:
        numbers: (S,) atomic numbers of the species, ascending.
        onsite_scale, onsite_shift: (S, K) eV.
        offsite_scale: (S, S, K) eV.
        offsite_shift: (S, S, K, M) eV, coefficients of the Gaussians.
        shift_centres: (M,) Å.
        shift_width: Å.
        n_structures: number of structures the statistics come from.
    """

    numbers: np.ndarray
    onsite_scale: np.ndarray
    onsite_shift: np.ndarray
    offsite_scale: np.ndarray
    offsite_shift: np.ndarray
    shift_centres: np.ndarray
    shift_width: float
    n_structures: int


def _even_scalars(mask: np.ndarray) -> np.ndarray:
    """Flat indices of the stored even-scalar entries of an irreps mask (2, L, F)."""
    scalar = np.zeros_like(mask)
    scalar[0, 0, :] = True
    return np.flatnonzero((mask & scalar).ravel())


def fit_scale_shift(
    samples: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    layouts: OutputLayouts,
    bond_cutoff: float,
) -> ScaleShift:
    """Fit the tables from (species, onsite, bond_species_i, bond_species_j, bond_distance, bond) samples.

    Args:
        samples: per structure (species (N,), onsite irreps (N, 2, L, F), bond species
            (B, 2) row/column, bond distances (B,) Å, bond irreps (B, 2, L, F)), in eV.
        layouts: the model's layouts.
        bond_cutoff: the model's bond cutoff (Å).

    Raises:
        MLHError: no samples.
    """
    n_species = layouts.n_species
    onsite: dict[int, list[np.ndarray]] = {a: [] for a in range(n_species)}
    offsite: dict[tuple[int, int], list[tuple[np.ndarray, np.ndarray]]] = {}
    index, sign = layouts.offsite_transpose
    n_structures = 0
    for species, onsite_irreps, bond_species, distance, bond_irreps in samples:
        n_structures += 1
        for a in range(n_species):
            onsite[a].append(onsite_irreps[species == a].reshape(-1, onsite_irreps[0].size))
        flat = bond_irreps.reshape(len(bond_irreps), -1)
        for (a, b) in set(map(tuple, bond_species.tolist())):
            rows = np.flatnonzero((bond_species[:, 0] == a) & (bond_species[:, 1] == b))
            offsite.setdefault((a, b), []).append((distance[rows], flat[rows]))
            transposed = sign[b, a] * np.take(flat[rows], index[b, a], axis=1)
            offsite.setdefault((b, a), []).append((distance[rows], transposed))
    if n_structures == 0:
        raise MLHError("no structures to fit the scale-shift statistics from")

    size_on = int(np.prod(layouts.onsite_shape))
    onsite_scale = np.ones((n_species, size_on))
    onsite_shift = np.zeros((n_species, size_on))
    for a, chunks in onsite.items():
        values = np.concatenate(chunks)
        scalars = _even_scalars(layouts.onsite_mask[a])
        if len(values):
            onsite_shift[a, scalars] = values[:, scalars].mean(axis=0)
            onsite_scale[a, scalars] = np.maximum(values[:, scalars].std(axis=0), _MIN_SCALE)

    centres = np.arange(0.0, bond_cutoff + SHIFT_SPACING / 2, SHIFT_SPACING)
    size_off = int(np.prod(layouts.offsite_shape))
    offsite_scale = np.ones((n_species, n_species, size_off))
    offsite_shift = np.zeros((n_species, n_species, size_off, len(centres)))
    for (a, b), chunks in offsite.items():
        distance = np.concatenate([d for d, _ in chunks])
        values = np.concatenate([v for _, v in chunks])
        scalars = _even_scalars(layouts.offsite_mask[a, b])
        design = gaussian_basis(distance, centres, SHIFT_SPACING)
        gram = design.T @ design
        gram += _RIDGE * max(np.trace(gram), 1.0) * np.eye(len(centres))
        coefficients = np.linalg.solve(gram, design.T @ values[:, scalars])
        residual = values[:, scalars] - design @ coefficients
        offsite_shift[a, b][scalars] = coefficients.T
        offsite_scale[a, b, scalars] = np.maximum(residual.std(axis=0), _MIN_SCALE)
    return ScaleShift(
        numbers=np.asarray(layouts.numbers),
        onsite_scale=onsite_scale,
        onsite_shift=onsite_shift,
        offsite_scale=offsite_scale,
        offsite_shift=offsite_shift,
        shift_centres=centres,
        shift_width=SHIFT_SPACING,
        n_structures=n_structures,
    )


def _to_dataset(stats: ScaleShift) -> xr.Dataset:
    species = ("species", stats.numbers)
    return xr.Dataset(
        {
            "onsite_scale": (("species", "onsite_irrep"), stats.onsite_scale, {"units": "eV"}),
            "onsite_shift": (("species", "onsite_irrep"), stats.onsite_shift, {"units": "eV"}),
            "offsite_scale": (("species", "species_col", "offsite_irrep"), stats.offsite_scale, {"units": "eV"}),
            "offsite_shift": (
                ("species", "species_col", "offsite_irrep", "shift_centre"),
                stats.offsite_shift,
                {"units": "eV", "long_name": "coefficients of the Gaussian shift basis"},
            ),
        },
        coords={
            "species": species,
            "species_col": ("species_col", stats.numbers),
            "shift_centre": ("shift_centre", stats.shift_centres, {"units": "Å"}),
        },
        attrs={"shift_width": stats.shift_width, "n_structures": stats.n_structures, "units": "eV, Å"},
    )


def write_scale_shift(stats: ScaleShift, path: Path) -> None:
    """Write the tables to NetCDF (atomic)."""
    with atomic_output(path) as tmp:
        _to_dataset(stats).to_netcdf(tmp)


def read_scale_shift(path: Path) -> ScaleShift:
    """Read tables written by `write_scale_shift`; MLHError naming the file if unreadable."""
    try:
        with xr.open_dataset(path) as ds:
            ds = ds.load()
        return ScaleShift(
            numbers=ds["species"].values,
            onsite_scale=ds["onsite_scale"].values,
            onsite_shift=ds["onsite_shift"].values,
            offsite_scale=ds["offsite_scale"].values,
            offsite_shift=ds["offsite_shift"].values,
            shift_centres=ds["shift_centre"].values,
            shift_width=float(ds.attrs["shift_width"]),
            n_structures=int(ds.attrs["n_structures"]),
        )
    except (OSError, KeyError, ValueError) as error:
        raise MLHError(f"{path}: not a readable scale-shift file ({error})") from error
