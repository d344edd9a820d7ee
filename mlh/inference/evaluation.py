"""Evaluation of predicted records against references: the per-structure and overall error
Dataset of many (predicted, reference) pairs, its NetCDF file and its figure (eV; MAE in
the file in eV, printed in meV)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import xarray as xr
from ase.data import atomic_numbers

from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.inference.metrics import eigenvalue_errors, gauge_aligned, gauge_shift, matrix_element_errors
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import labelled_variable as _var

__all__ = ["evaluate_pairs", "plot_evaluation", "write_evaluation"]


_ALIGNED = ["mae_all", "mae_onsite", "mae_offsite", "eigenvalue_mae_window"]
"""Metrics also reported after the gauge alignment H -> H - c S (`<name>_aligned`)."""

_TOTALS = ["mae_all", "mae_onsite", "mae_offsite", "mae_species_pair", "eigenvalue_mae_window",
           *(f"{name}_aligned" for name in _ALIGNED)]
"""Error variables that get a per-structure copy and an overall (weighted) value."""


def _structure_scalars(errors: xr.Dataset) -> xr.Dataset:
    """Variables of one structure over (), species_pair or species; totals renamed."""
    keep = [name for name, v in errors.data_vars.items()
            if set(v.dims) <= {"species_pair", "species"}]
    scalars = errors[keep].rename({name: f"{name}_per_structure" for name in _TOTALS})
    return scalars.drop_vars([name for name in scalars.coords if name not in scalars.dims])


def _atomic_number_key(label: str) -> tuple[int, ...]:
    """Atomic numbers of a species ("W") or species-pair ("Se-W") label."""
    return tuple(atomic_numbers[symbol] for symbol in label.split("-"))


def _weighted_mean(values: xr.DataArray, weights: xr.DataArray) -> xr.DataArray:
    """Mean of `values` over `structure` weighted by `weights` (NaN where no weight)."""
    present = weights > 0
    total = weights.where(present).sum("structure", min_count=1)
    return (values * weights).where(present).sum("structure", min_count=1) / total


def _aligned_errors(predicted: HamiltonianRecord, reference: HamiltonianRecord,
                    kpoints: np.ndarray | None, window: float) -> xr.Dataset:
    """The gauge shift c and the totals of the errors of H_pred - c S (eV)."""
    shift = gauge_shift(predicted, reference)
    aligned = gauge_aligned(predicted, shift)
    errors = xr.merge([matrix_element_errors(aligned, reference),
                       eigenvalue_errors(aligned, reference, kpoints, window)],
                      combine_attrs="override")
    data = {"gauge_shift": _var((), shift, "gauge shift c of the best H_pred - c S alignment", "eV")}
    for name in _ALIGNED:
        data[f"{name}_aligned"] = _var((), float(errors[name]),
                                       errors[name].attrs["long_name"] + " after the gauge alignment",
                                       "eV")
    return xr.Dataset(data)


def evaluate_pairs(
    pairs: Iterable[tuple[str, HamiltonianRecord, HamiltonianRecord]],
    window: float = 5.0,
    kpoints: np.ndarray | None = None,
) -> xr.Dataset:
    """Matrix-element and eigenvalue errors of many structures, with totals.

    Args:
        pairs: (name, predicted, reference) per structure; names must be unique.
        window: half width (eV) of the eigenvalue window around each E_F.
        kpoints: (n_kpoints, 3) reduced k-points for every structure, None for Γ.

    Returns:
        Dataset with, over `structure` (the names), the scalar and per-species variables
        of `matrix_element_errors` and `eigenvalue_errors`, the gauge shift c (eV,
        `gauge_shift`) and the metrics after H -> H - c S (`mae_all_aligned`,
        `mae_onsite_aligned`, `mae_offsite_aligned`, `eigenvalue_mae_window_aligned`:
        errors no physics sees removed) (NaN for species pairs and
        species absent from a structure, whose counts are 0); the per-structure copies of
        the totals below are named `<name>_per_structure`. Totals over all structures
        (eV), each the mean over all elements (eigenvalues) of all structures:
        `mae_all`, `mae_onsite`, `mae_offsite`, `mae_species_pair` (species_pair),
        `eigenvalue_mae_window`; and the summed `error_histogram` (block_kind,
        error_bin). attrs: `window` (eV).

    Raises:
        MLHError: no pairs, repeated names, or any error of the per-structure metrics
            (prefixed with the structure name).
    """
    names, scalars, histograms = [], [], []
    for name, predicted, reference in pairs:
        if name in names:
            raise MLHError(f"structure name {name!r} appears twice")
        try:
            elements = matrix_element_errors(predicted, reference)
            eigenvalues = eigenvalue_errors(predicted, reference, kpoints, window)
            aligned = _aligned_errors(predicted, reference, kpoints, window)
        except MLHError as err:
            raise MLHError(f"{name}: {err}") from None
        names.append(name)
        scalars.append(_structure_scalars(xr.merge([elements, eigenvalues, aligned],
                                                   combine_attrs="override")))
        histograms.append(elements["error_histogram"])
    if not names:
        raise MLHError("no structures to evaluate")
    dataset = xr.concat(scalars, dim="structure", join="outer",
                        fill_value={"n_elements_species_pair": 0, "n_elements_species": 0},
                        combine_attrs="override").assign_coords(structure=names)
    dataset = dataset.reindex(
        species_pair=sorted(dataset.species_pair.values, key=_atomic_number_key),
        species=sorted(dataset.species.values, key=_atomic_number_key),
    )

    totals = {
        "mae_all": ("mae_all_per_structure",
                    dataset.n_elements_onsite + dataset.n_elements_offsite),
        "mae_onsite": ("mae_onsite_per_structure", dataset.n_elements_onsite),
        "mae_offsite": ("mae_offsite_per_structure", dataset.n_elements_offsite),
        "mae_species_pair": ("mae_species_pair_per_structure",
                             dataset.n_elements_species_pair),
        "eigenvalue_mae_window": ("eigenvalue_mae_window_per_structure",
                                  dataset.n_eigenvalues_window),
    }
    totals.update({f"{name}_aligned": (f"{name}_aligned_per_structure", totals[name][1])
                   for name in _ALIGNED})
    for total, (per_structure, weights) in totals.items():
        dataset[total] = _weighted_mean(dataset[per_structure], weights)
        dataset[total].attrs = {
            "units": "eV",
            "long_name": dataset[per_structure].attrs["long_name"] + ", all structures",
        }
    dataset["error_histogram"] = sum(histograms[1:], histograms[0])
    dataset["error_histogram"].attrs = {
        "units": "1", "long_name": "number of H elements per absolute-error bin, all structures",
    }
    dataset.attrs = {"window": window}
    return dataset


# ------------------------------------------------------------------- plot
def write_evaluation(
    result: xr.Dataset, window: float, output: Path, plot: Path | None = None
) -> dict[str, float]:
    """Write the `evaluate_pairs` Dataset (eigenvalue window E_F +- `window` eV) to NetCDF,
    and its figure when `plot` is given (PNG); return the headline numbers to print (MAE in
    meV, and the mean spectrum relative L1)."""
    from mlh.record.io import write_dataset

    write_dataset(result, output)
    if plot is not None:
        plot_evaluation(result, plot)
    return {
        "H MAE (meV)": 1000 * float(result["mae_all"]),
        "on-site MAE (meV)": 1000 * float(result["mae_onsite"]),
        "off-site MAE (meV)": 1000 * float(result["mae_offsite"]),
        "c-aligned H MAE (meV)": 1000 * float(result["mae_all_aligned"]),
        f"eigenvalue MAE within E_F +- {window} eV (meV)": 1000 * float(result["eigenvalue_mae_window"]),
        f"c-aligned eigenvalue MAE within E_F +- {window} eV (meV)":
            1000 * float(result["eigenvalue_mae_window_aligned"]),
        "spectrum relative L1 (mean over structures)": float(result["spectrum_relative_l1"].mean()),
    }


def plot_evaluation(dataset: xr.Dataset, path: str | os.PathLike) -> Path:
    """Figure of matrix-element errors, saved (atomically) to `path`.

    Panels: (a) distribution of absolute H errors per log bin, on-site vs off-site;
    (b) their cumulative distributions; (c) MAE per species pair in meV.

    Args:
        dataset: output of `evaluate_pairs` or `matrix_element_errors`.
        path: output file; the format follows the suffix (e.g. .png).

    Returns:
        `path` as a Path.
    """
    from matplotlib.figure import Figure

    edges = np.append(dataset.error_bin_lower.values, dataset.error_bin_upper.values[-1])
    histogram = dataset.error_histogram
    fig = Figure(figsize=(13, 4), layout="constrained")
    ax_hist, ax_cdf, ax_bar = fig.subplots(1, 3)
    for kind in histogram.block_kind.values:
        counts = histogram.sel(block_kind=kind).values
        fraction = counts / max(counts.sum(), 1)
        ax_hist.stairs(fraction, edges, label=f"{kind} ({counts.sum():,} elements)")
        ax_cdf.step(edges, np.concatenate([[0.0], np.cumsum(fraction)]), where="post",
                    label=kind)
    for ax, ylabel in ((ax_hist, "fraction of elements"), (ax_cdf, "cumulative fraction")):
        ax.set_xscale("log")
        ax.set_xlabel("absolute error of H element (eV)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_hist.set_title("(a) error distribution")
    ax_cdf.set_title("(b) cumulative distribution")

    mae = dataset.mae_species_pair
    ax_bar.bar(mae.species_pair.values, 1000 * mae.values)
    ax_bar.set_ylabel("MAE (meV)")
    ax_bar.set_title("(c) MAE per species pair")
    ax_bar.tick_params(axis="x", labelrotation=45)
    ax_bar.grid(axis="y", alpha=0.3)
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=120)
    return path
