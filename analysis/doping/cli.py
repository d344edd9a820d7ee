"""`mlh-analyze doping`: structures -> predicted Hamiltonians -> hole concentrations -> posterior.

Writes OUT/hole_concentrations.nc (one row per structure), OUT/posterior.nc (ArviZ
InferenceData), OUT/posterior_summary.nc, OUT/summary.txt, OUT/design.png and
OUT/posterior_pairs.png. OUT/work/ holds one row per finished structure, so a re-run
continues where a killed one stopped (its summary says how many it skipped); the local
Dask workers exit when this process dies, and OUT/.mlh.lock keeps a second run out of a
folder a running one writes into. Bad options or output paths stop before any output is
written; structures that fail are listed after the others are done (exit code 1).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from analysis.cli_options import parse_interval, parse_species
from mlh.cli.app import report_failures, reports_errors
from mlh.errors import MLHError


def _symbols(text: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def _density_region(text: str) -> str | tuple[float, float] | None:
    if text in ("cell", "none"):
        return None if text == "none" else "cell"
    return parse_interval(text, "--density-region")


def _design_spec(dopant, host, vacancy_species, lattice_species, sites_per_lattice_atom,
                 pristine, density_region, area_axis):
    from analysis.doping.design import DesignSpec, pristine_ratio

    lattice = _symbols(lattice_species)
    if pristine is not None:
        if vacancy_species is None:
            raise MLHError("--pristine needs --vacancy-species")
        from mlh.gpaw.generate import read_structures

        reference = read_structures([pristine])[0][2]
        try:
            sites_per_lattice_atom = pristine_ratio(reference, vacancy_species, lattice)
        except MLHError as err:
            raise MLHError(f"{pristine}: {err}") from None
    return DesignSpec(dopant=dopant, host=host, vacancy_species=vacancy_species,
                      lattice_species=lattice, sites_per_lattice_atom=sites_per_lattice_atom,
                      density_region=_density_region(density_region), area_axis=area_axis)


def _stats_config(path: Path | None, available: set[str], overrides: dict):
    """The linear model: from YAML, else the seed's terms whose variables the study has."""
    import yaml
    from pydantic import ValidationError

    from analysis.doping.statistics import LinearModelConfig

    try:
        if path is None:
            config = LinearModelConfig()
            config = config.model_copy(update={
                "terms": [t for t in config.terms if t.variable in available]})
        else:
            config = LinearModelConfig.model_validate(yaml.safe_load(path.read_text()) or {})
        config = LinearModelConfig.model_validate(
            {**config.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})
    except OSError as err:
        raise MLHError(f"{path}: cannot read ({err})") from None
    except yaml.YAMLError as err:
        raise MLHError(f"{path}: not valid YAML ({err})") from None
    except ValidationError as err:
        first = err.errors()[0]
        raise MLHError(f"{path or 'statistics settings'}: {'.'.join(map(str, first['loc']))}: "
                       f"{first['msg']}") from None
    missing = [t.variable for t in config.terms if t.variable not in available]
    if missing:
        raise MLHError(f"the linear model uses {missing}, which this study does not compute; "
                       f"available: {sorted(available)}")
    return config


def _summary_text(table, summary, problems, wall_seconds: float, config, skipped: int) -> str:
    ok = table["status"].values == "ok"
    atoms = table["n_atoms"].values[ok] if "n_atoms" in table else []
    lines = [
        f"structures: {table.sizes['structure']} ({int(ok.sum())} ok, {int((~ok).sum())} failed; "
        f"{skipped} finished by an earlier run and skipped)",
        f"atoms per structure: {int(min(atoms))}-{int(max(atoms))}" if len(atoms) else None,
        f"wall time: {wall_seconds:.0f} s",
    ]
    for name, error in zip(table["structure"].values[~ok], table["error"].values[~ok]):
        lines.append(f"FAILED {name}: {error}")
    if summary is not None:
        lines += ["", f"posterior ({summary.attrs['chains']} chains x {summary.attrs['draws']} draws; "
                  f"response {config.response} in units of {config.response_scale:g}):",
                  f"{'parameter':<12}{'mean':>10}{'hdi 3%':>10}{'hdi 97%':>10}{'r_hat':>8}{'ess_bulk':>10}"]
        for name in summary["parameter"].values:
            row = summary.sel(parameter=name)
            lines.append(f"{name:<12}{float(row['mean']):>10.3f}{float(row['hdi_lower']):>10.3f}"
                         f"{float(row['hdi_upper']):>10.3f}{float(row['r_hat']):>8.3f}"
                         f"{float(row['ess_bulk']):>10.0f}")
        for term in config.terms:
            lines.append(f"  {term.name}: {term.variable} in units of {term.scale:g}"
                         + (" (centred)" if term.center else ""))
    lines += [f"WARNING {p}" for p in problems]
    return "\n".join(line for line in lines if line is not None) + "\n"


@reports_errors
def doping(
    structures: Annotated[list[Path], typer.Argument(
        help="Structure files (ASE-readable, every frame) or Hamiltonian records (*.nc).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder.")],
    model: Annotated[Optional[Path], typer.Option(help="Model folder (needed for structures).")] = None,
    dopant: Annotated[Optional[str], typer.Option(help="Dopant species, e.g. Nb or Ni.")] = None,
    host: Annotated[Optional[str], typer.Option(help="Host species of the dopant ratio, e.g. W or Hf.")] = None,
    vacancy_species: Annotated[Optional[str], typer.Option(help="Species whose vacancies count, e.g. Se.")] = None,
    lattice_species: Annotated[Optional[str], typer.Option(
        help="Species carrying the vacancy sites, e.g. W,Nb.")] = None,
    sites_per_lattice_atom: Annotated[Optional[float], typer.Option(
        help="Vacancy-species atoms per lattice atom when pristine (2 for WSe2).")] = None,
    pristine: Annotated[Optional[Path], typer.Option(
        help="Pristine reference structure giving sites per lattice atom.")] = None,
    density_region: Annotated[str, typer.Option(
        help="Mass density of: cell, LOWER,UPPER heights (Å) along the layer normal, or none.")] = "cell",
    area_axis: Annotated[Optional[int], typer.Option(help="Cell axis normal to the layer.")] = None,
    design_table: Annotated[Optional[Path], typer.Option(
        help="CSV with a 'structure' column and design variables (override computed ones).")] = None,
    species: Annotated[str, typer.Option(help="Species whose PDOS counts as holes.")] = "W,Se",
    window: Annotated[str, typer.Option(help="Hole window LOWER,UPPER relative to E_F (eV).")] = "0,0.2",
    sigma: Annotated[float, typer.Option(help="Gaussian smearing, standard deviation (eV).")] = 0.05,
    route: Annotated[str, typer.Option(help="auto, dense or sparse spectra.")] = "auto",
    stats_config: Annotated[Optional[Path], typer.Option(
        help="YAML of the linear model (terms, priors, sampler): LinearModelConfig of "
             "analysis.doping.statistics.")] = None,
    draws: Annotated[Optional[int], typer.Option(min=1, help="Posterior draws per chain.")] = None,
    tune: Annotated[Optional[int], typer.Option(min=1, help="Tuning steps per chain.")] = None,
    chains: Annotated[Optional[int], typer.Option(min=1, help="Chains.")] = None,
    stats: Annotated[bool, typer.Option(help="Fit the Bayesian linear model.")] = True,
    workers: Annotated[int, typer.Option(min=1, help="Local Dask worker processes.")] = 2,
    memory_per_worker: Annotated[Optional[str], typer.Option(
        help="Local worker memory limit, e.g. 6GiB (default: memory / workers).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        help="Address of a running Dask scheduler (workers must see the same files).")] = None,
    keep_records: Annotated[bool, typer.Option(help="Keep predicted records in OUT/records.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars (on a terminal).")] = True,
) -> None:
    """Hole concentrations of many structures and a Bayesian model of the design variables."""
    from analysis.doping.batch import dask_client, run_batch
    from analysis.doping.study import (
        HoleSettings,
        analyse_structure,
        collect_tasks,
        plot_design,
        read_design_table,
        results_table,
        settings_attrs,
        study_design,
    )
    from mlh.file_output import atomic_output, check_output_folder, output_lock
    from mlh.record.io import write_dataset

    start = time.perf_counter()
    check_output_folder(output)
    hole = HoleSettings(species=parse_species(species, "--species"), window=parse_interval(window, "--window"),
                        sigma=sigma, route=route, area_axis=area_axis)
    spec = _design_spec(dopant, host, vacancy_species, lattice_species, sites_per_lattice_atom,
                        pristine, density_region, area_axis)
    records_dir = output / "records" if keep_records else None
    tasks, atoms = collect_tasks(structures, model, hole, records_dir)
    table_values = None if design_table is None else read_design_table(design_table, list(tasks))
    design = study_design(atoms, spec, table_values)
    available = {k for values in design.values() for k in values}
    config = _stats_config(stats_config, available, {"draws": draws, "tune": tune, "chains": chains}) \
        if stats else None

    attrs = settings_attrs(hole, spec, model)
    with output_lock(output, "mlh-analyze doping"):
        with dask_client(scheduler, workers, memory_per_worker) as client:
            outcome = run_batch(tasks, analyse_structure, output / "work", attrs, client,
                                progress=progress)
        if outcome.skipped:
            typer.echo(f"{outcome.skipped} structures were finished by an earlier run")
        table = results_table(tasks, design, outcome.rows, outcome.failures,
                              {**attrs, "wall_seconds": time.perf_counter() - start})
        write_dataset(table, output / "hole_concentrations.nc")
        if outcome.failures:
            with atomic_output(output / "failures.json") as tmp:
                tmp.write_text(json.dumps(outcome.failures, indent=1))
        else:
            (output / "failures.json").unlink(missing_ok=True)

        summary, problems = None, []
        if config is not None:
            from analysis.doping.statistics import (
                convergence_problems,
                fit_linear_model,
                plot_posterior_pairs,
                posterior_summary,
                write_inference_data,
            )

            plot_design(table, [t.variable for t in config.terms], output / "design.png",
                        config.response)
            try:
                idata = fit_linear_model(table, config, progressbar=progress and sys.stderr.isatty())
            except MLHError as err:
                problems = [f"no posterior: {err}"]
            else:
                write_inference_data(idata, output / "posterior.nc")
                summary = posterior_summary(idata, config.hdi_prob)
                write_dataset(summary, output / "posterior_summary.nc")
                plot_posterior_pairs(idata, output / "posterior_pairs.png")
                problems = convergence_problems(summary)
        text = _summary_text(table, summary, problems, time.perf_counter() - start, config, outcome.skipped)
        with atomic_output(output / "summary.txt") as tmp:
            tmp.write_text(text)
        typer.echo(text, nl=False)
    report_failures([error if error.startswith(tasks[name].source) else f"{tasks[name].source}: {error}"
                     for name, error in outcome.failures.items()])
