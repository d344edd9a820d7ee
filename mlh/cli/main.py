"""The `mlh` command line: thin wrappers that parse, call one library function, report.

Heavy imports (GPAW, JAX) happen inside the commands, not at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from mlh.cli.app import app, report_failures
from mlh.cli.app import reports_errors as _reports_errors
from mlh.errors import MLHError
from mlh.grids import parse_grid

if TYPE_CHECKING:
    from mlh.gpaw.generate import Generation


@app.command()
@_reports_errors
def generate(
    structures: Annotated[list[Path], typer.Argument(help="ASE-readable files (all frames used).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the records.")],
    config: Annotated[Optional[Path], typer.Option(help="YAML with GPAWSettings fields.")] = None,
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=1, help="Structures in parallel.")] = 2,
    overlap_only: Annotated[bool, typer.Option(help="Only S(R), no SCF.")] = False,
    baseline: Annotated[bool, typer.Option(
        help="Also store the zeroth-step H0(R) (initial-density H) beside H(R).")] = False,
    baseline_only: Annotated[bool, typer.Option(help="Only S(R) and H0(R), no SCF.")] = False,
    first_step_share: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="With --baseline or --baseline-only: store GPAW's first SCF step "
                               "from H0, linearly mixed with this share, as the baseline "
                               "(B = H0 + s (H[n0] - H0); SiO2: 0.45).")] = None,
    min_distance: Annotated[Optional[float], typer.Option(
        min=0.0, help="Refuse structures with two atoms closer than this (Å); default 0.5, "
                      "as mlh infer.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal).")] = True,
) -> None:
    """Run GPAW LCAO on every structure and write one record (NetCDF) per structure.

    Finished records in OUTPUT are skipped, so a killed run resumes where it stopped.
    Bad structures are listed (also in OUTPUT/failures.json) after the others are done.
    """
    from mlh.file_output import check_output_folder
    from mlh.gpaw.generate import generate as run_generate
    from mlh.gpaw.settings import load_settings

    if overlap_only and baseline_only:
        raise MLHError("--overlap-only and --baseline-only exclude each other")
    check_output_folder(output)
    task = "overlap" if overlap_only else ("baseline" if baseline_only else None)
    settings = load_settings(config, task=task, baseline=baseline or None,
                             first_step_share=first_step_share)
    if settings.first_step_share and not (settings.baseline or settings.task == "baseline"):
        raise MLHError("--first-step-share needs --baseline or --baseline-only")
    outcome = run_generate(structures, output, settings, jobs=jobs, progress=progress,
                           **({} if min_distance is None else {"min_distance": min_distance}))
    _report_batch(outcome, output)


def _report_batch(outcome: Generation, output: Path) -> None:
    """Say what a generate or unpack run wrote, and exit
    non-zero listing the failures if any."""
    failed = outcome.failed
    typer.echo(f"{len(outcome.results) - len(failed)} records written, {len(failed)} failed, "
               f"{outcome.skipped} skipped (finished earlier), to {output}")
    report_failures([r.error for r in failed])


@app.command()
@_reports_errors
def pack(
    records: Annotated[list[Path], typer.Argument(help="Record files or folders (*.nc) with H and H0.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the packs (*.mlhpack).")],
    quantum: Annotated[float, typer.Option(help="Rounding step of H - H0 (eV), > 0.")] = 1e-5,
) -> None:
    """Pack GPAW records compactly: structure, pairs, labels and H - H0 rounded to QUANTUM.

    S and H0 are left out (mlh unpack recomputes them with GPAW, no SCF); a 36-atom SiO2
    record of 5 MB becomes ~90 kB. Needs records made with mlh generate --baseline.
    """
    from mlh.file_output import check_output_folder
    from mlh.record.io import record_files
    from mlh.record.pack import pack_records

    check_output_folder(output)
    files = record_files(records)
    size = pack_records(files, output, quantum)
    typer.echo(f"{len(files)} packs ({size / 1e6:.1f} MB) written to {output}")


@app.command()
@_reports_errors
def unpack(
    packs: Annotated[list[Path], typer.Argument(help="Pack files or folders (*.mlhpack).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the records.")],
    jobs: Annotated[int, typer.Option("-j", "--jobs", min=1, help="Packs in parallel.")] = 2,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal).")] = True,
) -> None:
    """Turn packs back into records: GPAW recomputes S(R) and H0(R) (no SCF), the pack adds H - H0.

    Finished records in OUTPUT are skipped, so a killed run resumes where it stopped.
    """
    from mlh.file_output import check_output_folder
    from mlh.gpaw.unpack import unpack as run_unpack

    check_output_folder(output)
    outcome = run_unpack(packs, output, jobs=jobs, progress=progress)
    _report_batch(outcome, output)


@app.command()
@_reports_errors
def pack_first_step(
    records: Annotated[list[Path], typer.Argument(help="Record files or folders (*.nc) whose baseline "
                                                  "is a first step B.")],
    zeroth_step: Annotated[Path, typer.Option(help="Folder of the same records with H0 as baseline "
                                              "(same file names).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the packs (*.mlhstep).")],
    quantum: Annotated[float, typer.Option(help="Rounding step of B - H0 (eV), > 0.")] = 1e-5,
) -> None:
    """Pack first-step baselines compactly: B - H0 rounded to QUANTUM (~85 kB for a 36-atom
    SiO2 cell), so mlh unpack-first-step rebuilds B without GPAW.
    """
    from mlh.file_output import check_output_folder
    from mlh.record.first_step_pack import pack_first_steps
    from mlh.record.io import record_files

    check_output_folder(output)
    files = record_files(records)
    size = pack_first_steps(files, zeroth_step, output, quantum)
    typer.echo(f"{len(files)} first-step packs ({size / 1e6:.1f} MB) written to {output}")


@app.command()
@_reports_errors
def unpack_first_step(
    packs: Annotated[list[Path], typer.Argument(help="First-step pack files or folders (*.mlhstep).")],
    zeroth_step: Annotated[Path, typer.Option(help="Folder of the records with H0 as baseline "
                                              "(mlh unpack; same file names).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the records with B.")],
) -> None:
    """Records whose baseline is the first step B: each H0 record plus its pack's B - H0 (no GPAW).

    Finished records in OUTPUT are skipped, so a killed run resumes where it stopped.
    """
    from mlh.file_output import check_output_folder
    from mlh.record.first_step_pack import FIRST_STEP_SUFFIX, unpack_first_steps
    from mlh.record.io import collect_files

    check_output_folder(output)
    written, skipped = unpack_first_steps(collect_files(packs, FIRST_STEP_SUFFIX, "first-step packs"),
                                          zeroth_step, output)
    typer.echo(f"{written} records written, {skipped} skipped (finished earlier), to {output}")


@app.command()
@_reports_errors
def recipe(
    name: Annotated[str, typer.Argument(help="wse2 (WSe2 + Se vacancies) or sio2 (quartz).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="extxyz file to write.")],
    count: Annotated[int, typer.Option("-n", "--count", min=1)] = 10,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    repeat: Annotated[Optional[str], typer.Option(help="Supercell, e.g. 3x2 or 2x2x1.")] = None,
    ghosts: Annotated[bool, typer.Option(help="Keep vacancies as ghost atoms.")] = False,
    dopants: Annotated[float, typer.Option(
        min=0.0, help="wse2 only: Poisson mean of substituted W sites (see --dopant).")] = 0.0,
    dopant: Annotated[str, typer.Option(help="wse2 only: element put on W sites.")] = "Nb",
    dopant_rate: Annotated[Optional[str], typer.Option(
        help="wse2 only: LOW:HIGH; each structure's mean dopant fraction of W sites is drawn "
             "uniformly from it (replaces --dopants).")] = None,
    vacancy_rate: Annotated[Optional[str], typer.Option(
        help="wse2 only: LOW:HIGH; each structure's mean vacancy fraction of Se sites is "
             "drawn uniformly from it.")] = None,
    rattle: Annotated[Optional[str], typer.Option(
        help="LOW:HIGH (Å); each structure's Gaussian rattle amplitude is drawn uniformly "
             "from it (default: the recipe's own, 0.03 Å wse2, 0.05 Å sio2).")] = None,
    vacancy_relaxation: Annotated[float, typer.Option(
        min=0.0, help="sio2 only: the O vacancy's two Si neighbours move towards each other "
                      "by up to this many Å each (relaxation-like geometries).")] = 0.0,
    vacancy_probability: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="sio2 only: chance that a cell has one O vacancy (default: the "
                               "recipe's own, 0.5; 1 gives only vacancy cells).")] = None,
) -> None:
    """Write COUNT random training structures of a recipe (see mlh.gpaw.structures)."""
    import numpy as np
    from ase.io import write

    from mlh.file_output import atomic_output, check_output_file
    from mlh.gpaw.structures import quartz_with_vacancy, wse2_with_vacancies

    check_output_file(output)

    builders = {"wse2": wse2_with_vacancies, "sio2": quartz_with_vacancy}
    if name not in builders:
        raise MLHError(f"unknown recipe {name!r}; choose from {sorted(builders)}")
    kwargs: dict = {"ghosts": ghosts}
    if (dopants > 0 or dopant_rate or vacancy_rate) and name != "wse2":
        raise MLHError("--dopants, --dopant-rate and --vacancy-rate apply to the wse2 recipe only")
    sio2_options = {"--vacancy-relaxation": ("vacancy_relaxation", vacancy_relaxation or None),
                    "--vacancy-probability": ("vacancy_probability", vacancy_probability)}
    for option, (key, value) in sio2_options.items():
        if value is None:
            continue
        if name != "sio2":
            raise MLHError(f"{option} applies to the sio2 recipe only")
        kwargs[key] = value
    if dopants > 0 or dopant_rate:
        kwargs.update(dopant=dopant, mean_dopants=dopants)
    rates = {key: _rate_range(text, option) for key, text, option in (
        ("dopant_rate", dopant_rate, "--dopant-rate"), ("vacancy_rate", vacancy_rate, "--vacancy-rate"))
        if text is not None}
    if rattle is not None:
        rates["rattle"] = _rate_range(rattle, "--rattle")
    if repeat is not None:
        kwargs["repeat"] = parse_grid(repeat, "--repeat", lengths=(2, 3))
    rng = np.random.default_rng(seed)
    images = [builders[name](rng, **kwargs, **{k: rng.uniform(*r) for k, r in rates.items()})
              for _ in range(count)]
    with atomic_output(output) as tmp:
        write(tmp, images, format="extxyz")
    sizes = sorted({len(atoms) for atoms in images})
    typer.echo(f"{count} {name} structures ({sizes} atoms) written to {output}")


def _rate_range(text: str, option: str) -> tuple[float, float]:
    """LOW:HIGH fractions in [0, 1]; MLHError otherwise."""
    try:
        low, high = (float(x) for x in text.split(":"))
    except ValueError:
        raise MLHError(f"{option} {text!r} is not of the form LOW:HIGH, e.g. 0:0.03") from None
    if not 0 <= low <= high <= 1:
        raise MLHError(f"{option} {text!r}: need 0 <= LOW <= HIGH <= 1")
    return low, high


@app.command("import-gears-h")
@_reports_errors
def import_gears_h(
    snapshots: Annotated[list[Path], typer.Argument(help="gears_h snapshot folders.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the records.")],
) -> None:
    """Convert GEARS H training snapshots into mlh records (OUTPUT/<folder name>.nc).

    Bad snapshots are listed after the others are converted."""
    from mlh.file_output import check_output_folder
    from mlh.io.gears_h import read_gears_h_snapshot
    from mlh.record.io import write_record

    check_output_folder(output)
    problems = []
    for path in snapshots:
        try:
            record = read_gears_h_snapshot(path)
        except MLHError as err:
            problems.append(str(err))
            continue
        write_record(record, output / f"{Path(path).resolve().name}.nc")
    typer.echo(f"{len(snapshots) - len(problems)} records written to {output}, {len(problems)} failed")
    report_failures(problems)


@app.command()
@_reports_errors
def summarize(
    directory: Annotated[Path, typer.Argument(help="Folder of records.")],
    plot: Annotated[Optional[Path], typer.Option(help="Write the H-decay figure here (PNG).")] = None,
    table: Annotated[Optional[Path], typer.Option(help="Write the table here (NetCDF).")] = None,
) -> None:
    """Print a table of the records in DIRECTORY (energies in eV, times in s)."""
    from mlh.file_output import check_output_file
    from mlh.io.summary import plot_decay, summarize_records
    from mlh.record.io import record_files

    check_output_file(plot, "--plot")
    check_output_file(table, "--table")

    paths = record_files([directory])
    summary = summarize_records(paths)
    typer.echo(summary.to_dataframe().to_string(float_format=lambda x: f"{x:.4g}"))
    typer.echo(
        f"\n{len(paths)} records, {int(summary.n_atoms.sum())} atoms, "
        f"{float(summary.file_size.sum()):.1f} MiB, "
        f"mean GPAW time {float(summary.wall_time.mean()):.1f} s per structure"
    )
    if table is not None:
        from mlh.record.io import write_dataset

        write_dataset(summary, table)
    if plot is not None:
        typer.echo(f"figure: {plot_decay(paths, plot)}")


from mlh.cli import predictor_commands  # noqa: E402,F401  (registers template/analyze/train/infer/evaluate)
