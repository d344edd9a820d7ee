"""Gaussian-smeared DOS and Mulliken-projected DOS of a ProjectedSpectrum, and their figure.

Energies in eV, relative to the Fermi level. Every state n (energy eps_n, electron
capacity w_n, Mulliken weights p_n(a, l)) contributes

    PDOS_{a,l}(E) = sum_n w_n p_n(a, l) g(E + E_F - eps_n),
    g(x) = exp(-x^2 / (2 sigma^2)) / (sigma sqrt(2 pi)),

with sigma the Gaussian standard deviation. The DOS is the sum of the PDOS over all
channels and integrates to the electron capacity of the states (2 per state and k-point
weight for spin-paired H), so the units are states/eV counting spin degeneracy.
Defaults follow GEARS H (seed 001, section 4.3): 20,000 points, sigma = 0.05 eV.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import xarray as xr
from ase.data import chemical_symbols

from analysis._common import provenance_attrs, variable
from analysis.projected import ProjectedSpectrum
from mlh.errors import MLHError
from mlh.file_output import atomic_output

__all__ = [
    "DEFAULT_POINTS", "DEFAULT_SIGMA", "COVERAGE_SIGMAS", "energy_grid", "species_symbols",
    "pdos_dataset", "plot_pdos",
]

DEFAULT_POINTS = 20_000
DEFAULT_SIGMA = 0.05
"""Gaussian standard deviation (eV)."""
COVERAGE_SIGMAS = 5.0
"""A windowed spectrum must list every state within this many sigma of the energy grid."""
_CUTOFF_SIGMAS = 10.0
"""States farther than this from every grid energy are skipped (weight < 2e-22)."""
_CHUNK_VALUES = 1 << 22
"""Gaussian values evaluated at once (32 MB), bounding memory for any number of states."""
_L_LETTERS = "spdf"


def energy_grid(lower: float, upper: float, n_points: int = DEFAULT_POINTS) -> np.ndarray:
    """(n_points,) evenly spaced energies from `lower` to `upper` (eV, relative to E_F)."""
    if not (np.isfinite(lower) and np.isfinite(upper) and lower < upper):
        raise MLHError(f"energy range ({lower}, {upper}) eV is empty or not finite")
    if n_points < 2:
        raise MLHError(f"an energy grid needs at least 2 points, got {n_points}")
    return np.linspace(lower, upper, int(n_points))


def species_symbols(numbers: np.ndarray) -> list[str]:
    """Chemical symbols of the distinct atomic numbers, in order of atomic number."""
    return [chemical_symbols[int(z)] for z in np.unique(numbers)]


def _column_map(spectrum: ProjectedSpectrum, n_l: int, per_atom: bool) -> sp.csr_matrix:
    """(n_channels, n_columns) indicator: channel -> (species, l) column [, atom column]."""
    species_of_atom = np.searchsorted(np.unique(spectrum.numbers), spectrum.numbers)
    columns = species_of_atom[spectrum.channel_atom] * n_l + spectrum.channel_l
    n_channels = len(spectrum.channel_atom)
    n_columns = len(np.unique(spectrum.numbers)) * n_l
    rows = np.arange(n_channels)
    if per_atom:
        rows = np.concatenate([rows, rows])
        columns = np.concatenate([columns, n_columns + spectrum.channel_atom])
        n_columns += len(spectrum.numbers)
    return sp.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(n_channels, n_columns))


def _smeared(
    energies: np.ndarray, state_weights: np.ndarray, columns: np.ndarray, grid: np.ndarray,
    sigma: float,
) -> np.ndarray:
    """(n_columns, n_grid) sum_n w_n columns[n, c] g(grid - energies[n]), in state blocks."""
    out = np.zeros((columns.shape[1], len(grid)))
    chunk = max(1, _CHUNK_VALUES // len(grid))
    norm = 1.0 / (sigma * np.sqrt(2 * np.pi))
    for start in range(0, len(energies), chunk):
        block = slice(start, start + chunk)
        gauss = np.exp(-0.5 * ((grid[None, :] - energies[block, None]) / sigma) ** 2)
        out += (columns[block] * (norm * state_weights[block])[:, None]).T @ gauss
    return out


PDOS_UNITS = "states/eV"


def pdos_skeleton(
    species_l: np.ndarray, grid: np.ndarray, symbols: list[str], fermi_level: float,
    sigma: float, method: str,
) -> tuple[dict, dict, dict]:
    """Variables, coordinates and attributes shared by every (P)DOS Dataset.

    Args:
        species_l: (n_species, n_l, n_energy) PDOS per species and l (states/eV).
        grid: (n_energy,) energies relative to E_F (eV).
        symbols: chemical symbols of the species axis.
        fermi_level: E_F (eV).
        sigma: Gaussian standard deviation (eV).
        method: how the curves were computed.

    Returns:
        `dos`, `pdos_species`, `pdos_species_l`; the energy/species/l coordinates; attrs.
    """
    n_l = species_l.shape[1]
    data = {
        "dos": variable("energy", species_l.sum(axis=(0, 1)), "density of states", PDOS_UNITS),
        "pdos_species": variable(("species", "energy"), species_l.sum(axis=1),
                                 "Mulliken-projected DOS per species", PDOS_UNITS),
        "pdos_species_l": variable(("species", "l", "energy"), species_l,
                                   "Mulliken-projected DOS per species and angular momentum",
                                   PDOS_UNITS),
    }
    coords = {
        "energy": variable("energy", grid, "energy relative to the Fermi level", "eV"),
        "species": ("species", symbols),
        "l": variable("l", np.arange(n_l), "angular momentum", "1"),
        "l_letter": ("l", list(_L_LETTERS[:n_l])),
    }
    attrs = {
        "fermi_level": float(fermi_level),
        "fermi_level_units": "eV",
        "sigma": float(sigma),
        "smearing": "Gaussian; sigma is its standard deviation (eV)",
        "projection": "Mulliken, on (atom, l) channels of the non-orthogonal basis",
        "method": method,
    }
    return data, coords, attrs


def pdos_dataset(
    spectrum: ProjectedSpectrum,
    energies: np.ndarray,
    sigma: float = DEFAULT_SIGMA,
    per_atom: bool = False,
    provenance: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """DOS and PDOS (species; species and l; optionally atoms) on `energies`.

    Args:
        spectrum: states with Mulliken weights (dense or windowed).
        energies: (n_energy,) grid relative to E_F (eV), e.g. `energy_grid(-8, 6)`.
        sigma: Gaussian standard deviation (eV).
        per_atom: also `pdos_atom` (atom, energy).
        provenance: extra attributes, stored as `provenance_<key>`.

    Returns:
        Dataset with `dos` (energy), `pdos_species` (species, energy), `pdos_species_l`
        (species, l, energy) and optionally `pdos_atom` (atom, energy), all states/eV;
        coordinates `energy` (eV relative to E_F), `species` (chemical symbols), `l`;
        attrs fermi_level (eV), sigma (eV), method, n_electrons, electrons_below.

    Raises:
        MLHError: bad grid or sigma, or a grid closer than 5 sigma to the edge of the
            energy range a windowed spectrum lists.
    """
    grid = np.asarray(energies, dtype=float)
    if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all():
        raise MLHError("the energy grid must be a non-empty 1D array of finite energies")
    if not sigma > 0:
        raise MLHError(f"sigma must be positive, got {sigma} eV")
    fermi = spectrum.fermi_level
    lower, upper = fermi + grid.min(), fermi + grid.max()
    margin = COVERAGE_SIGMAS * sigma
    if not spectrum.covers(lower - margin, upper + margin):
        raise MLHError(
            f"the energy grid E_F + [{grid.min():.3f}, {grid.max():.3f}] eV needs every state "
            f"within {margin:.3f} eV of it, but the {spectrum.method} spectrum lists only "
            f"[{spectrum.energy_range[0] - fermi:.3f}, {spectrum.energy_range[1] - fermi:.3f}] "
            f"eV around E_F"
        )
    n_l = int(spectrum.channel_l.max(initial=0)) + 1
    symbols = species_symbols(spectrum.numbers)
    offset = spectrum.energies - fermi
    cutoff = _CUTOFF_SIGMAS * sigma
    near = (offset > grid.min() - cutoff) & (offset < grid.max() + cutoff)
    columns = np.asarray(spectrum.projections[near] @ _column_map(spectrum, n_l, per_atom))
    curves = _smeared(offset[near], spectrum.state_weights[near], columns, grid, sigma)
    species_l = curves[: len(symbols) * n_l].reshape(len(symbols), n_l, len(grid))

    data, coords, attrs = pdos_skeleton(species_l, grid, symbols, fermi, sigma, spectrum.method)
    if per_atom:
        data["pdos_atom"] = variable(("atom", "energy"), curves[len(symbols) * n_l:],
                                     "Mulliken-projected DOS per atom", PDOS_UNITS)
        coords["atom"] = ("atom", np.arange(len(spectrum.numbers)))
        coords["atom_species"] = ("atom", [chemical_symbols[int(z)] for z in spectrum.numbers])
    attrs.update({
        "n_electrons": float(spectrum.n_electrons),
        "electrons_below": float(spectrum.electrons_below),
        "n_kpoints": len(spectrum.kpoints),
        **provenance_attrs(provenance),
    })
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot_pdos(
    ds: xr.Dataset,
    path: str | os.PathLike,
    l_resolved: bool = False,
    energy_range: tuple[float, float] | None = None,
) -> Path:
    """Figure of the total DOS and the species PDOS (optionally l-resolved), saved atomically.

    Args:
        ds: output of `pdos_dataset` (or any Dataset with its variables).
        path: output file; the format follows the suffix (e.g. .png).
        l_resolved: also draw each species' s/p/d/f PDOS (thin dashed lines).
        energy_range: (lower, upper) eV relative to E_F to show; default the whole grid.

    Returns:
        `path` as a Path.
    """
    from matplotlib.figure import Figure

    energy = ds.energy.values
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.fill_between(energy, ds.dos.values, color="0.85", label="total")
    ax.plot(energy, ds.dos.values, color="0.4", lw=0.8)
    for index, species in enumerate(ds.species.values):
        color = f"C{index}"
        ax.plot(energy, ds.pdos_species.sel(species=species).values, color=color, lw=1.3,
                label=str(species))
        if l_resolved:
            for l, letter in zip(ds.l.values, ds.l_letter.values):
                curve = ds.pdos_species_l.sel(species=species, l=l).values
                if curve.max() > 1e-3 * ds.dos.values.max():
                    ax.plot(energy, curve, color=color, lw=0.7, ls=["--", ":", "-.", "--"][l],
                            label=f"{species} {letter}")
    ax.axvline(0.0, color="k", ls="--", lw=0.8, label="$E_F$")
    ax.set_xlim(*(energy_range if energy_range is not None else (energy[0], energy[-1])))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("$E - E_F$ (eV)")
    ax.set_ylabel("DOS (states/eV)")
    ax.set_title(f"{ds.attrs.get('method', '')} spectrum, Gaussian sigma = "
                 f"{ds.attrs.get('sigma', float('nan')):g} eV")
    ax.legend(fontsize=8, ncol=2)
    ax.grid(alpha=0.3)
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120)
    return path
