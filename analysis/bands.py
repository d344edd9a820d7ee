"""Band structures along ASE band paths from the stored H(R), S(R), and their figure.

At each k on the path the bands are the eigenvalues of (H(k), S(k)) with
H(k) = sum_R exp(2 pi i k.R) H(R) (mlh.record.hamiltonian). Energies in eV; k distances in 1/Å
(ASE's linear k axis, including the factor 2 pi).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from ase.cell import Cell
from ase.dft.kpoints import BandPath

from analysis._common import provenance_attrs, variable
from analysis.spectrum import generalized_eigh
from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.record.hamiltonian import HamiltonianRecord

__all__ = ["record_bandpath", "band_structure", "plot_bands"]


def record_bandpath(
    record: HamiltonianRecord, path: str | None = None, npoints: int = 100
) -> BandPath:
    """ASE band path of the record's cell and periodic directions.

    Args:
        path: special points such as "GMKG" ("," breaks the path); None: the default path
            of the Bravais lattice ASE recognises.
        npoints: number of k-points along the whole path.
    """
    pbc = np.asarray(record.pbc, dtype=bool)
    if not pbc.any():
        raise MLHError("a band structure needs a periodic cell: this record has no periodic axis")
    if npoints < 2:
        raise MLHError(f"a band path needs at least 2 k-points, got {npoints}")
    try:
        return Cell(record.cell).bandpath(path, npoints=npoints, pbc=pbc)
    except (ValueError, KeyError) as err:
        raise MLHError(f"no band path {path!r} for this cell: {err}") from None


def _check_path_cell(bandpath: BandPath, record: HamiltonianRecord) -> None:
    """MLHError unless the path's k-points are reduced coordinates of the record's lattice.

    ASE may hand back the lattice in a rotated standard orientation, so the periodic
    lattice vectors are compared through their metric (dot products).
    """
    pbc = np.asarray(record.pbc, dtype=bool)
    path_cell, cell = np.asarray(bandpath.cell)[pbc], np.asarray(record.cell)[pbc]
    if not np.allclose(path_cell @ path_cell.T, cell @ cell.T, atol=1e-6):
        raise MLHError("the band path was made for a different cell than the record's")
    if np.any(bandpath.kpts[:, ~pbc] != 0):
        raise MLHError("the band path has k components along a non-periodic axis")


def band_structure(
    record: HamiltonianRecord,
    path: str | BandPath | None = None,
    npoints: int = 100,
    fermi_level: float | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Eigenvalues of (H(k), S(k)) along a band path.

    Args:
        record: a periodic record with H.
        path: special points ("GMKG"), an ase BandPath, or None for the lattice's default.
        npoints: k-points along the path (ignored for a BandPath).
        fermi_level: E_F (eV); when given, energies are relative to it.
        provenance: extra attributes, stored as `provenance_<key>`.

    Returns:
        Dataset with `energies` (spin, kpoint, band) in eV, `kpoints` (kpoint, xyz) reduced,
        `k_distance` (kpoint) in 1/Å, and `special_point_position` (special_point) with the
        coordinate `special_point_label`; attrs path, energy_zero, fermi_level.

    Raises:
        MLHError: overlap-only or non-periodic record, unknown path, H or S unusable.
    """
    if not record.has_hamiltonian:
        raise MLHError("this is an overlap-only record: it has no Hamiltonian to diagonalise")
    if isinstance(path, BandPath):
        bandpath = path
        _check_path_cell(bandpath, record)
    else:
        bandpath = record_bandpath(record, path, npoints)
    kpts = np.asarray(bandpath.kpts, dtype=float)
    energies = np.empty((record.n_spins, len(kpts), record.n_orbitals))
    for k_index, k in enumerate(kpts):
        S = record.overlap_k(k).toarray()
        for s in range(record.n_spins):
            where = f"at path k-point {k_index} {tuple(np.round(k, 6))}, spin {s}"
            H = record.hamiltonian_k(k, s).toarray()
            energies[s, k_index] = generalized_eigh(H, S, where, eigvals_only=True)
    zero = 0.0 if fermi_level is None else float(fermi_level)
    distance, special_distance, labels = bandpath.get_linear_kpoint_axis()

    data = {
        "energies": variable(("spin", "kpoint", "band"), energies - zero,
                             "band energy" + ("" if fermi_level is None else " relative to E_F"),
                             "eV"),
        "kpoints": variable(("kpoint", "xyz"), kpts, "k-point, reduced coordinates", "1"),
        "k_distance": variable("kpoint", distance, "distance along the band path", "1/angstrom"),
        "special_point_position": variable("special_point", special_distance,
                                           "position of the special point on the path",
                                           "1/angstrom"),
    }
    coords = {"xyz": ["x", "y", "z"], "special_point_label": ("special_point", list(labels))}
    attrs = {
        "path": bandpath.path,
        "energy_zero": "absolute" if fermi_level is None else "fermi_level",
        **({} if fermi_level is None else {"fermi_level": zero}),
        **provenance_attrs(provenance),
    }
    return xr.Dataset(data, coords=coords, attrs=attrs)


def plot_bands(
    ds: xr.Dataset,
    path: str | os.PathLike,
    energy_range: tuple[float, float] | None = None,
) -> Path:
    """Figure of the bands of `band_structure`, saved atomically to `path`.

    Args:
        ds: output of `band_structure`.
        path: output file; the format follows the suffix (e.g. .png).
        energy_range: (lower, upper) eV shown; default E_F -4..+4 eV when energies are
            relative to E_F, else all bands.

    Returns:
        `path` as a Path.
    """
    from matplotlib.figure import Figure

    relative = ds.attrs.get("energy_zero") == "fermi_level"
    x = ds.k_distance.values
    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    # A path break ("K,U") puts two different k-points at one x: draw the pieces apart.
    jumps = np.any(np.diff(ds.kpoints.values, axis=0) != 0, axis=1) & (np.diff(x) == 0)
    for piece in np.split(np.arange(len(x)), np.flatnonzero(jumps) + 1):
        for s, style in zip(range(ds.sizes["spin"]), ["-", "--"]):
            ax.plot(x[piece], ds.energies.isel(spin=s, kpoint=piece).values, color=f"C{s}",
                    ls=style, lw=1.0)
    positions = ds.special_point_position.values
    for position in positions:
        ax.axvline(position, color="0.5", lw=0.6)
    ticks, names = _merged_ticks(positions, ds.special_point_label.values)
    ax.set_xticks(ticks, names)
    ax.set_xlim(x[0], x[-1])
    if relative:
        ax.axhline(0.0, color="k", ls="--", lw=0.8)
    if energy_range is None and relative:
        energy_range = (-4.0, 4.0)
    if energy_range is not None:
        ax.set_ylim(*energy_range)
    ax.set_ylabel("$E - E_F$ (eV)" if relative else "E (eV)")
    ax.set_title(f"band structure along {ds.attrs.get('path', '')}")
    ax.grid(axis="y", alpha=0.3)
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120)
    return path


def _merged_ticks(positions: np.ndarray, labels: np.ndarray) -> tuple[list[float], list[str]]:
    """Tick positions and labels, Γ for G, with "K|U" where a path break puts two at one x."""
    ticks: list[float] = []
    names: list[str] = []
    for position, label in zip(positions, labels):
        name = "Γ" if label == "G" else str(label)
        if ticks and np.isclose(position, ticks[-1]):
            names[-1] = f"{names[-1]}|{name}"
        else:
            ticks.append(float(position))
            names.append(name)
    return ticks, names
