"""Hole concentration by the GEARS H recipe (seed 001, section 4.3).

The Gaussian-smeared PDOS of the chosen species (default W and Se) integrated from
E_F + window[0] to E_F + window[1] (default 0 to 0.2 eV). Each state's Gaussian is
integrated analytically,

    N_h = sum_n w_n p_n(species) [Phi((E_F + b - eps_n) / sigma) - Phi((E_F + a - eps_n) / sigma)],

with Phi the standard normal CDF, w_n the state's electron capacity and p_n its Mulliken
weight on the species: exactly the integral of the `analysis.dos` curves, without the
grid. Energies in eV, lengths in Å; per-area values in cm^-2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr
from ase.data import atomic_numbers
from scipy.special import ndtr

from analysis._common import provenance_attrs, variable
from analysis.dos import COVERAGE_SIGMAS, DEFAULT_SIGMA, species_symbols
from analysis.projected import ProjectedSpectrum
from mlh.errors import MLHError

__all__ = ["hole_concentration", "cell_area"]

ANGSTROM2_PER_CM2 = 1e16


def _species_numbers(species: Sequence[str], numbers: np.ndarray) -> list[int]:
    """Atomic numbers of `species` (chemical symbols); MLHError for unknown or absent ones."""
    if isinstance(species, str) or len(species) == 0:
        raise MLHError(f"species must be a non-empty list of chemical symbols, got {species!r}")
    unknown = [s for s in species if s not in atomic_numbers or s == "X"]
    if unknown:
        raise MLHError(f"unknown species {unknown}: give chemical symbols such as 'W', 'Se'")
    if len(set(species)) != len(species):
        raise MLHError(f"species {list(species)} contains repeats")
    absent = [s for s in species if atomic_numbers[s] not in set(numbers.tolist())]
    if absent:
        raise MLHError(f"species {absent} are not in this structure, which has "
                       f"{', '.join(species_symbols(numbers))}")
    return [atomic_numbers[s] for s in species]


def cell_area(cell: np.ndarray, axis: int) -> float:
    """Area (Å^2) of the cell face spanned by the two lattice vectors other than `axis`."""
    if axis not in (0, 1, 2):
        raise MLHError(f"area axis must be 0, 1 or 2, got {axis}")
    first, second = (np.asarray(cell, dtype=float)[i] for i in range(3) if i != axis)
    return float(np.linalg.norm(np.cross(first, second)))


def _area_axis(area_axis: int | None, pbc: np.ndarray) -> int | None:
    """`area_axis`, else the one non-periodic axis of `pbc`, else None (no layer)."""
    if area_axis is not None:
        return area_axis
    open_axes = np.flatnonzero(~np.asarray(pbc, dtype=bool)).tolist()
    return open_axes[0] if len(open_axes) == 1 else None


def hole_concentration(
    spectrum: ProjectedSpectrum,
    species: Sequence[str] = ("W", "Se"),
    window: tuple[float, float] = (0.0, 0.2),
    sigma: float = DEFAULT_SIGMA,
    area_axis: int | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Holes: the species-projected, Gaussian-smeared DOS integrated over E_F + window.

    Args:
        spectrum: states with Mulliken weights; must list every state within 5 sigma of
            the window.
        species: chemical symbols whose PDOS counts.
        window: (lower, upper) eV relative to E_F.
        sigma: Gaussian standard deviation (eV).
        area_axis: cell axis normal to the layer (0, 1, 2); default the one non-periodic
            axis of the spectrum's cell. Without either, the per-area values are NaN.
        provenance: extra attributes, stored as `provenance_<key>`.

    Returns:
        Dataset with `holes_per_cell` and `holes_species_per_cell` (species) in electrons'
        worth of states per cell (spin degeneracy included), `holes_per_area` and
        `holes_species_per_area` (cm^-2), `cell_area` (Å^2) and `fermi_level` (eV).

    Raises:
        MLHError: unknown or absent species, an empty window, or a window the spectrum
            does not cover.
    """
    lower, upper = (float(x) for x in window)
    if not (np.isfinite(lower) and np.isfinite(upper) and lower < upper):
        raise MLHError(f"the energy window ({lower}, {upper}) eV is empty: lower must be below "
                       "upper")
    if not sigma > 0:
        raise MLHError(f"sigma must be positive, got {sigma} eV")
    numbers = _species_numbers(species, np.asarray(spectrum.numbers))
    axis = _area_axis(area_axis, spectrum.pbc)
    area = np.nan if axis is None else cell_area(spectrum.cell, axis)
    fermi = spectrum.fermi_level
    margin = COVERAGE_SIGMAS * sigma
    if not spectrum.covers(fermi + lower - margin, fermi + upper + margin):
        raise MLHError(
            f"the window E_F + [{lower:g}, {upper:g}] eV needs every state within "
            f"{margin:.3f} eV of it, but the {spectrum.method} spectrum lists only "
            f"[{spectrum.energy_range[0] - fermi:.3f}, {spectrum.energy_range[1] - fermi:.3f}] "
            "eV around E_F"
        )

    offset = spectrum.energies - fermi
    fraction = ndtr((upper - offset) / sigma) - ndtr((lower - offset) / sigma)
    channel_number = np.asarray(spectrum.numbers)[spectrum.channel_atom]
    weight_n = spectrum.state_weights * fraction
    holes = np.array([weight_n @ spectrum.projections[:, channel_number == z].sum(axis=1)
                      for z in numbers])

    label = "+".join(species)
    data = {
        "holes_per_cell": variable((), holes.sum(), f"{label}-projected states in E_F + window, "
                                   "per cell", "1"),
        "holes_species_per_cell": variable("species", holes, "projected states in E_F + window "
                                           "per species, per cell", "1"),
        "holes_per_area": variable((), holes.sum() / area * ANGSTROM2_PER_CM2,
                                   f"{label} hole concentration", "cm^-2"),
        "holes_species_per_area": variable("species", holes / area * ANGSTROM2_PER_CM2,
                                           "hole concentration per species", "cm^-2"),
        "cell_area": variable((), area, f"cell area normal to axis {axis}", "angstrom^2"),
        "fermi_level": variable((), float(fermi), "Fermi level", "eV"),
    }
    attrs = {
        "species": ",".join(species),
        "window_lower": lower,
        "window_upper": upper,
        "window_units": "eV relative to E_F",
        "sigma": float(sigma),
        "smearing": "Gaussian; sigma is its standard deviation (eV), integrated analytically",
        "method": spectrum.method,
        "n_electrons": float(spectrum.n_electrons),
        "area_axis": -1 if axis is None else int(axis),
        **provenance_attrs(provenance),
    }
    return xr.Dataset(data, coords={"species": ("species", list(species))}, attrs=attrs)
