"""Transport results as an xarray Dataset (NetCDF, with units) and their figure.

The figure follows seed 004 figure 6: T(E) on a log scale against E - E_F, with the bias
window mu_R..mu_L of the largest bias shaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from analysis._common import provenance_attrs, variable
from analysis.transport.transmission import Transmission, landauer_current
from mlh.file_output import atomic_output

__all__ = ["transport_dataset", "plot_transmission"]


def transport_dataset(result: Transmission, fermi_level: float, biases: np.ndarray, temperature: float,
                      attrs: Mapping[str, Any] | None = None,
                      provenance: Mapping[str, Any] | None = None) -> xr.Dataset:
    """T(E) (k-averaged and per k, both directions) and I(V) at `biases` (V) by Landauer-Büttiker.

    Energies are stored relative to `fermi_level` (eV, an attribute); `temperature` in K
    sets the contacts' Fermi functions.
    """
    biases = np.atleast_1d(np.asarray(biases, dtype=float))
    average = result.average
    currents = [landauer_current(result.energies, average, fermi_level, bias, temperature) for bias in biases]
    data = {
        "transmission": variable(("energy",), average, "k-averaged transmission left -> right", "1"),
        "transmission_right_to_left": variable(("energy",), result.weights @ result.right_to_left,
                                               "k-averaged transmission right -> left", "1"),
        "transmission_k": variable(("kpoint", "energy"), result.left_to_right,
                                   "transmission left -> right per transverse k-point", "1"),
        "kpoints": variable(("kpoint", "xyz"), result.kpoints, "reduced transverse k-points of the device cell", "1"),
        "kpoint_weights": variable(("kpoint",), result.weights, "k-point weights", "1"),
        "current": variable(("bias",), np.array(currents), "Landauer-Büttiker current", "A"),
    }
    coords = {
        "energy": variable(("energy",), result.energies - fermi_level, "energy relative to E_F", "eV"),
        "bias": variable(("bias",), biases, "bias V, mu_L = E_F + V/2, mu_R = E_F - V/2", "V"),
    }
    return xr.Dataset(data, coords=coords, attrs={
        "fermi_level": float(fermi_level), "fermi_level_units": "eV", "temperature_kelvin": float(temperature),
        **dict(attrs or {}), **provenance_attrs(provenance)})


def plot_transmission(ds: xr.Dataset, path: str | os.PathLike, title: str = "",
                      reference: xr.Dataset | None = None, labels: tuple[str, str] = ("T(E)", "reference")) -> Path:
    """Log-scale T(E - E_F) with the largest bias window shaded; saved atomically to `path`.

    `reference` (another result on its own E_F) is drawn dashed for comparison, e.g. GPAW's
    H against a predicted one (seed 004 figure 6).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    values = np.clip(ds.transmission.values, 1e-30, None)
    ax.semilogy(ds.energy.values, values, color="C0", lw=1.2, label=labels[0])
    if reference is not None:
        ax.semilogy(reference.energy.values, np.clip(reference.transmission.values, 1e-30, None), color="C3",
                    lw=1.0, ls="--", label=labels[1])
    bias = float(np.abs(ds.bias.values).max()) if ds.sizes.get("bias") else 0.0
    if bias > 0:
        ax.axvspan(-bias / 2, bias / 2, color="0.85", zorder=0,
                   label=f"bias window {bias:g} V, I = {float(ds.current.values[np.argmax(np.abs(ds.bias.values))]):.3g} A")
    ax.set_xlabel("$E - E_F$ (eV)")
    ax.set_ylabel("transmission")
    ax.set_xlim(ds.energy.values[0], ds.energy.values[-1])
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or str(ds.attrs.get("source", "")), fontsize=9)
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    return path
