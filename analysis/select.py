"""Choose the route to a projected spectrum: dense diagonalization or the sparse window.

Dense diagonalization (analysis.spectrum) is exact and gives every state, but needs
O(N²) memory and O(N³) time in the number of orbitals N. Above `DENSE_ORBITAL_LIMIT`
orbitals the sparse route (analysis.sparse.window) gives the exact Fermi level and the exact
states of an energy window around it, at Γ only.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from analysis.projected import ProjectedSpectrum
from mlh.errors import MLHError
from mlh.record.hamiltonian import HamiltonianRecord

__all__ = ["DENSE_ORBITAL_LIMIT", "Route", "choose_route", "spectrum_for"]

DENSE_ORBITAL_LIMIT = 10_000
"""Largest number of orbitals diagonalized densely by the automatic choice
(its memory and time: benchmarks/analysis_large.py)."""

Route = Literal["auto", "dense", "sparse"]


def choose_route(record: HamiltonianRecord, route: Route, kpoints: np.ndarray | None) -> str:
    """"dense" or "sparse" for this record; MLHError for an impossible request."""
    if route not in ("auto", "dense", "sparse"):
        raise MLHError(f"unknown route {route!r}; choose from auto, dense, sparse")
    if route == "auto":
        route = "dense" if record.n_orbitals <= DENSE_ORBITAL_LIMIT or kpoints is not None else "sparse"
    if route == "sparse" and kpoints is not None:
        raise MLHError("the sparse route works at Γ only: drop the k-point grid or use --route dense")
    return route


def spectrum_for(
    record: HamiltonianRecord,
    route: Route = "auto",
    kpoints: np.ndarray | None = None,
    kpoint_weights: np.ndarray | None = None,
    n_electrons: float | None = None,
    charge: float = 0.0,
    width: float = 0.01,
    window: tuple[float, float] = (-0.3, 0.5),
) -> ProjectedSpectrum:
    """The projected spectrum of `record` by the chosen route.

    Args:
        record: a record with H and S.
        route: "dense", "sparse" or "auto" (dense up to DENSE_ORBITAL_LIMIT orbitals or
            whenever k-points are given).
        kpoints, kpoint_weights: reduced k-points and weights (dense route only); None: Γ.
        n_electrons: electrons of the neutral structure; default record.labels.n_electrons.
        charge: electrons removed (positive: holes added).
        width: Fermi-Dirac width (eV) of the occupations that fix E_F.
        window: (lower, upper) eV relative to E_F of the states the sparse route lists.
    """
    if choose_route(record, route, kpoints) == "dense":
        from analysis.spectrum import dense_spectrum

        return dense_spectrum(record, kpoints=kpoints, kpoint_weights=kpoint_weights,
                              n_electrons=n_electrons, charge=charge, width=width)
    from analysis.sparse.window import window_spectrum

    return window_spectrum(record, n_electrons=n_electrons, charge=charge, width=width, window=window)


def pdos_for(
    record: HamiltonianRecord,
    energies: np.ndarray,
    route: Route = "auto",
    kpoints: np.ndarray | None = None,
    kpoint_weights: np.ndarray | None = None,
    n_electrons: float | None = None,
    charge: float = 0.0,
    sigma: float = 0.05,
    per_atom: bool = False,
):
    """DOS/PDOS Dataset on `energies` (eV relative to E_F) by the chosen route.

    Dense: Gaussian-smeared Mulliken PDOS of all states. Sparse: the exact E_F of the
    window route and the kernel-polynomial PDOS (its resolution and stochastic error in
    the attrs); per-atom PDOS only on the dense route.
    """
    if choose_route(record, route, kpoints) == "dense":
        from analysis.dos import pdos_dataset

        spectrum = spectrum_for(record, "dense", kpoints, kpoint_weights, n_electrons, charge)
        return pdos_dataset(spectrum, energies, sigma=sigma, per_atom=per_atom)
    if per_atom:
        raise MLHError("per-atom PDOS needs the dense route (--route dense)")
    from analysis.sparse.kpm import kpm_pdos
    from analysis.sparse.shift_invert import sparse_pencil
    from analysis.sparse.window import window_spectrum

    pencil = sparse_pencil(record)  # H, S and their ordering, shared by both steps
    spectrum = window_spectrum(record, n_electrons=n_electrons, charge=charge, pencil=pencil)
    return kpm_pdos(record, energies, fermi_level=spectrum.fermi_level, sigma=sigma, pencil=pencil)
