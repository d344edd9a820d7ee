"""`mlh-analyze transport`: two-terminal transmission T(E) and Landauer-Büttiker current I(V).

Reads a device record (and optionally a periodic electrode record), cuts the device open
along --axis, attaches semi-infinite electrodes (sisl self-energies) and solves the
device by the recursive block-tridiagonal Green's function. Writes one NetCDF file
(energies relative to E_F in eV, T dimensionless, I in A) and, with --plot, the figure.
Every input is checked before any work: bad input ends with one line and exit code 1,
and nothing is written.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from analysis.cli_options import parse_interval
from mlh.cli.app import reports_errors
from mlh.errors import MLHError
from mlh.grids import parse_grid


def _floats(text: str, option: str) -> np.ndarray:
    try:
        return np.array([float(v) for v in text.split(",") if v.strip()])
    except ValueError:
        raise MLHError(f"{option} {text!r} is not a comma-separated list of numbers") from None


def _transverse_grid(kpts: str, axis: int) -> tuple[np.ndarray, np.ndarray]:
    from mlh.record.kpoints import monkhorst_pack

    size = parse_grid(kpts, "--kpts")
    if size[axis] != 1:
        raise MLHError(f"--kpts {kpts!r}: the transport axis {axis} must have 1 k-point")
    return monkhorst_pack(size, time_reversal=True)


def _fermi_level(record, path: Path, given: float | None, kpoints: np.ndarray, weights: np.ndarray) -> float:
    if given is not None:
        return given
    if record.labels.fermi_level is not None:
        return float(record.labels.fermi_level)
    from analysis.spectrum import dense_spectrum

    try:
        return dense_spectrum(record, kpoints=kpoints, kpoint_weights=weights).fermi_level
    except MLHError as err:
        raise MLHError(f"{path}: no Fermi level in the record and none computed ({err}); "
                       "give --fermi-level") from None


@reports_errors
def transport(
    device: Annotated[Path, typer.Argument(help="Device record (.nc) with H and S.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="NetCDF file of T(E) and I(V).")],
    axis: Annotated[int, typer.Option(help="Transport axis: cell vector 0, 1 or 2.")] = 0,
    electrode_cells: Annotated[Optional[int], typer.Option(
        help="Electrodes from the device's own ends: the device is this many electrode "
             "periods long along the axis.")] = None,
    electrode: Annotated[Optional[Path], typer.Option(
        help="Periodic electrode record (same transverse cell), used on both sides.")] = None,
    energies: Annotated[str, typer.Option(help="Energy range LOWER,UPPER relative to E_F (eV).")] = "-1.5,1.5",
    points: Annotated[int, typer.Option(min=2, help="Energy grid points.")] = 301,
    bias: Annotated[str, typer.Option(help="Biases V (comma-separated), mu_L,R = E_F +- V/2.")] = "0.5",
    temperature: Annotated[float, typer.Option(min=0.0, help="Contact temperature (K).")] = 300.0,
    kpts: Annotated[str, typer.Option(help="Transverse Monkhorst-Pack grid, 1 along the axis.")] = "1x1x1",
    eta: Annotated[float, typer.Option(min=0.0, help="Electrode broadening (eV).")] = 1e-4,
    fermi_level: Annotated[Optional[float], typer.Option(
        help="E_F (eV); default the device record's label, else from its spectrum on --kpts.")] = None,
    tolerance: Annotated[float, typer.Option(
        help="Largest difference (eV) allowed between an electrode layer and the device's end.")] = 0.05,
    plot: Annotated[Optional[Path], typer.Option(help="Figure of T(E) with the bias window (PNG).")] = None,
    jobs: Annotated[Optional[int], typer.Option(
        min=1, help="Energies solved at once (threads, one BLAS thread each); default all cores.")] = None,
) -> None:
    """Transmission T(E) and current I(V) of a two-terminal device (seed 004 section 5)."""
    from analysis.transport.dataset import plot_transmission, transport_dataset
    from analysis.transport.device import two_terminal_device
    from analysis.transport.transmission import check_bias_window, default_jobs, transmission
    from mlh.file_output import check_output_file
    from mlh.record.io import read_record, write_dataset

    check_output_file(output)
    check_output_file(plot, "--plot")
    lower, upper = parse_interval(energies, "--energies")
    biases = _floats(bias, "--bias")
    if (electrode is None) == (electrode_cells is None):
        raise MLHError("give exactly one of --electrode-cells and --electrode")
    if axis not in (0, 1, 2):
        raise MLHError(f"--axis {axis} is not 0, 1 or 2")
    kpoints, weights = _transverse_grid(kpts, axis)
    device_record = read_record(device)
    electrode_record = None if electrode is None else read_record(electrode)
    start = time.perf_counter()
    setup = two_terminal_device(device_record, axis=axis, electrode=electrode_record,
                                electrode_cells=electrode_cells, tolerance=tolerance,
                                device_name=str(device), electrode_name=str(electrode))
    zero = _fermi_level(device_record, device, fermi_level, kpoints, weights)
    grid = zero + np.linspace(lower, upper, points)
    check_bias_window(grid, zero, biases, temperature)
    result = transmission(setup, grid, kpoints, weights, eta=eta, jobs=jobs or default_jobs())
    ds = transport_dataset(result, zero, biases, temperature, attrs={
        "source": str(device), "electrode": str(electrode) if electrode else f"device ends ({electrode_cells} cells)",
        "axis": axis, "eta_eV": eta, "n_blocks": len(setup.blocks),
        "block_orbitals": ",".join(str(len(b)) for b in setup.blocks),
        "coupling_length_angstrom": setup.coupling_length, "seconds": time.perf_counter() - start,
    }, provenance=device_record.provenance)
    write_dataset(ds, output)
    if plot is not None:
        plot_transmission(ds, plot, title=device.name)
    for v, current in zip(biases, ds.current.values):
        typer.echo(f"{device.name}: I({v:g} V) = {current:.4g} A")
    typer.echo(f"T(E) at {points} energies x {len(kpoints)} k-points, {len(setup.blocks)} blocks "
               f"-> {output}")
