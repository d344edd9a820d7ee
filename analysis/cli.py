"""`mlh-analyze pdos | bands | hole | compare | density | doping | transport`: analysis of records.

Each command reads Hamiltonian records, calls the analysis library and writes xarray
Datasets to NetCDF (atomically) plus a figure when asked. Energies in eV, lengths in Å.
Bad input ends with one line on stderr naming the file and the problem, and exit code 1;
commands taking several records follow the batch policy of `mlh.cli.app` (the good
records are finished, each bad one is listed, exit code 1). Output paths are checked
before any work.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from analysis.cli_options import parse_interval, parse_species
from analysis.doping.cli import doping
from analysis.transport.cli import transport
from mlh.cli.app import Application, report_failures, reports_errors
from mlh.errors import MLHError
from mlh.grids import parse_grid

app = Application(help="Electronic-structure analysis of Hamiltonian records (eV, Å).")

RecordsArg = Annotated[list[Path], typer.Argument(help="Record files or folders of records.")]
RouteOpt = Annotated[str, typer.Option(help="auto, dense or sparse (large structures, Γ only).")]
KptsOpt = Annotated[Optional[str], typer.Option(help="Monkhorst-Pack grid such as 6x6x1 (default Γ).")]
ChargeOpt = Annotated[float, typer.Option(help="Electrons removed from the neutral structure.")]
SigmaOpt = Annotated[float, typer.Option(help="Gaussian smearing, standard deviation (eV).")]


def _records(paths: list[Path], problems: list[str]):
    """(path, record) for every readable record file under `paths`, read lazily; the
    problem of each unreadable one (naming it) is appended to `problems`."""
    from mlh.record.io import read_record, record_files

    for path in record_files(paths):
        try:
            record = read_record(path)
        except MLHError as err:
            problems.append(str(err))
            continue
        yield path, record


def _grid(kpts: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    from mlh.record.kpoints import monkhorst_pack

    if kpts is None:
        return None, None
    return monkhorst_pack(parse_grid(kpts, "--kpts"))


@app.command()
@reports_errors
def pdos(
    records: RecordsArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for NAME.pdos.nc (+ .png).")],
    energies: Annotated[str, typer.Option(help="Energy range LOWER,UPPER relative to E_F (eV).")] = "-8,6",
    points: Annotated[int, typer.Option(min=2, help="Energy grid points.")] = 20_000,
    sigma: SigmaOpt = 0.05,
    kpts: KptsOpt = None,
    charge: ChargeOpt = 0.0,
    route: RouteOpt = "auto",
    per_atom: Annotated[bool, typer.Option(help="Also the PDOS of every atom.")] = False,
    plot: Annotated[bool, typer.Option(help="Write a figure next to each NetCDF file.")] = True,
) -> None:
    """Total DOS and Mulliken-projected DOS (species, species and l, atoms) around E_F."""
    from analysis.dos import energy_grid, plot_pdos
    from analysis.select import pdos_for
    from mlh.file_output import check_output_folder
    from mlh.record.io import write_dataset

    lower, upper = parse_interval(energies, "--energies")
    grid = energy_grid(lower, upper, points)
    kpoints, weights = _grid(kpts)
    check_output_folder(output)
    problems: list[str] = []
    done = 0
    for path, record in _records(records, problems):
        try:
            result = pdos_for(record, grid, route=route, kpoints=kpoints, kpoint_weights=weights,
                              charge=charge, sigma=sigma, per_atom=per_atom)
        except MLHError as err:
            problems.append(f"{path}: {err}")
            continue
        result.attrs["source"] = str(path)
        target = write_dataset(result, output / f"{path.stem}.pdos.nc")
        if plot:
            plot_pdos(result, target.with_suffix(".png"))
        done += 1
        typer.echo(f"{path.name}: E_F = {result.attrs['fermi_level']:.4f} eV "
                   f"({result.attrs['method']}) -> {target}")
    typer.echo(f"{done} PDOS written to {output}, {len(problems)} failed")
    report_failures(problems)


@app.command()
@reports_errors
def hole(
    records: RecordsArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="NetCDF file, one row per record.")],
    species: Annotated[str, typer.Option(help="Comma-separated species whose PDOS counts.")] = "W,Se",
    window: Annotated[str, typer.Option(help="LOWER,UPPER relative to E_F (eV).")] = "0,0.2",
    sigma: SigmaOpt = 0.05,
    kpts: KptsOpt = None,
    charge: ChargeOpt = 0.0,
    route: RouteOpt = "auto",
    area_axis: Annotated[Optional[int], typer.Option(help="Cell axis normal to the layer (0-2); "
                                                    "default: the one non-periodic axis.")] = None,
) -> None:
    """Hole concentration (GEARS H recipe): PDOS of SPECIES integrated over E_F + WINDOW."""
    import xarray as xr

    from analysis.hole import hole_concentration
    from analysis.select import spectrum_for
    from mlh.file_output import check_output_file
    from mlh.record.io import write_dataset

    lower, upper = parse_interval(window, "--window")
    names = parse_species(species, "--species")
    kpoints, weights = _grid(kpts)
    check_output_file(output)
    margin = 5 * sigma
    rows, sources, problems = [], [], []
    for path, record in _records(records, problems):
        start = time.perf_counter()
        try:
            spectrum = spectrum_for(record, route=route, kpoints=kpoints, kpoint_weights=weights,
                                    charge=charge, window=(min(lower - margin, -0.3), upper + margin))
            row = hole_concentration(spectrum, species=names, window=(lower, upper), sigma=sigma,
                                     area_axis=area_axis)
        except MLHError as err:
            problems.append(f"{path}: {err}")
            continue
        row["seconds"] = xr.Variable((), time.perf_counter() - start, {"units": "s"})
        row["method"] = xr.Variable((), spectrum.method)
        row["n_atoms"] = xr.Variable((), record.n_atoms)
        rows.append(row)
        sources.append(str(path))
        typer.echo(f"{path.name}: E_F = {spectrum.fermi_level:.4f} eV, "
                   f"{float(row['holes_per_cell']):.5g} holes per cell ({spectrum.method})")
    if not rows:
        report_failures(problems)
        raise MLHError("no records found in the given paths")
    table = xr.concat(rows, dim="structure", combine_attrs="drop_conflicts")
    table = table.assign_coords(structure=sources)
    write_dataset(table, output)
    typer.echo(f"{len(rows)} hole concentrations written to {output}, {len(problems)} failed")
    report_failures(problems)


@app.command()
@reports_errors
def bands(
    record: Annotated[Path, typer.Argument(help="A record of a periodic cell.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="NetCDF file of the bands.")],
    path: Annotated[str, typer.Option(help="Special points, e.g. GMKG (ASE band path).")] = "",
    npoints: Annotated[int, typer.Option(min=2, help="k-points along the path.")] = 100,
    fermi_level: Annotated[Optional[float], typer.Option(help="E_F (eV); default: the record's "
                                                        "label, else from the --kpts grid.")] = None,
    kpts: KptsOpt = None,
    charge: ChargeOpt = 0.0,
    plot: Annotated[Optional[Path], typer.Option(help="Figure of the bands (PNG).")] = None,
) -> None:
    """Band structure along an ASE band path from the stored H(R), S(R)."""
    from analysis.bands import band_structure, plot_bands
    from analysis.spectrum import dense_spectrum
    from mlh.file_output import check_output_file
    from mlh.record.io import read_record, write_dataset

    check_output_file(output)
    check_output_file(plot, "--plot")
    data = read_record(record)
    if fermi_level is None:
        fermi_level = data.labels.fermi_level
    if fermi_level is None:
        kpoints, weights = _grid(kpts)
        if kpoints is None:
            raise MLHError(f"{record}: the record has no Fermi level: give --fermi-level or --kpts")
        fermi_level = dense_spectrum(data, kpoints=kpoints, kpoint_weights=weights, charge=charge).fermi_level
    try:
        result = band_structure(data, path or None, npoints=npoints, fermi_level=fermi_level)
    except MLHError as err:
        raise MLHError(f"{record}: {err}") from None
    result.attrs["source"] = str(record)
    write_dataset(result, output)
    if plot is not None:
        plot_bands(result, plot)
    typer.echo(f"{result.sizes['kpoint']} k-points written to {output}")


@app.command()
@reports_errors
def compare(
    predicted: Annotated[Path, typer.Argument(help="Predicted record, or a folder of them.")],
    reference: Annotated[Path, typer.Argument(
        help="Reference record (compared with a predicted record whatever their names), or a "
             "folder (matched by file name).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="NetCDF file of the metrics.")],
    window: Annotated[float, typer.Option(help="Eigenvalue window around E_F (eV).")] = 5.0,
    kpts: KptsOpt = None,
    plot: Annotated[Optional[Path], typer.Option(help="Error histograms and CDFs (PNG).")] = None,
) -> None:
    """H MAE (on-site / off-site / species pair), eigenvalue MAE within E_F +- WINDOW and
    spectrum relative L1/L2 errors between predicted and reference records.

    Predicted records without a reference, or unreadable ones, are listed after the
    metrics of the others are written."""
    import json

    from mlh.file_output import check_output_file
    from mlh.inference.evaluation import evaluate_pairs, write_evaluation
    from mlh.record.io import read_record, record_files

    check_output_file(output)
    check_output_file(plot, "--plot")
    kpoints = _grid(kpts)[0]
    predictions = record_files([predicted])
    if predicted.is_file() and reference.is_file():
        matches = {predicted: reference}
    else:
        references = {path.name: path for path in record_files([reference])}
        matches = {path: references.get(path.name) for path in predictions}
    problems = [f"{path}: no reference record of that name in {reference}"
                for path, match in matches.items() if match is None]

    def pairs():
        for path, match in matches.items():
            if match is not None:
                try:
                    yield path.stem, read_record(path), read_record(match)
                except MLHError as err:
                    problems.append(str(err))

    try:
        result = evaluate_pairs(pairs(), window=window, kpoints=kpoints)
    except MLHError:
        report_failures(problems)  # every pair failed: list why
        raise
    typer.echo(json.dumps(write_evaluation(result, window, output, plot), indent=1))
    typer.echo(f"metrics of {len(matches) - len(problems)} records written to {output}, "
               f"{len(problems)} failed")
    report_failures(problems)


@app.command()
@reports_errors
def density(
    record: Annotated[Path, typer.Argument(help="Hamiltonian record (.nc) with S and H.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="NetCDF file of n(r).")],
    cube: Annotated[Optional[Path], typer.Option(help="Also write a Gaussian cube file.")] = None,
    grid_spacing: Annotated[Optional[float], typer.Option(
        help="Grid spacing (Å; default the record's GPAW spacing).")] = None,
) -> None:
    """Pseudo valence density n(r) = sum rho phi phi of a record on GPAW's real-space grid
    (electrons/Å^3; the cube file in electrons/Bohr^3)."""
    from mlh.file_output import check_output_file
    from mlh.record.io import read_record
    from physics.real_space_density import (
        pseudo_density_for_record,
        write_density_cube,
        write_density_netcdf,
    )

    check_output_file(output)
    check_output_file(cube, "--cube")
    result = pseudo_density_for_record(read_record(record), grid_spacing=grid_spacing)
    write_density_netcdf(result, output, provenance={"record": str(record)})
    if cube is not None:
        write_density_cube(result, cube)
    typer.echo(f"{result.grid_electron_count:.6f} pseudo electrons on a "
               f"{'x'.join(map(str, result.density.shape[1:]))} grid written to {output}")

app.command()(doping)
app.command()(transport)
