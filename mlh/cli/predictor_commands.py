"""`mlh template | analyze | partition | train | infer | evaluate | seal | ensemble`: predictor commands.

Each parses its arguments, calls one library function and reports; JAX is imported
inside the commands. The model runs in float32; metrics are computed in float64 numpy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mlh.cli.app import app, report_failures, reports_errors
from mlh.errors import MLHError


@app.command()
@reports_errors
def template(
    kind: Annotated[str, typer.Argument(help="What to write a template for: train.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="YAML file to write.")] = Path("train.yaml"),
) -> None:
    """Write a commented configuration template (defaults: GEARS H listings S3.1-S3.6)."""
    from mlh.file_output import check_output_file
    from mlh.model.config import write_template

    if kind != "train":
        raise MLHError(f"unknown template {kind!r}; choose from ['train']")
    check_output_file(output)
    write_template(output)
    typer.echo(f"training template written to {output}")


@app.command()
@reports_errors
def analyze(
    dataset: Annotated[list[Path], typer.Argument(help="Record folders or files.")],
    config: Annotated[Optional[Path], typer.Option(help="Training YAML (for the cutoffs).")] = None,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="Statistics file; default DATASET/scale_shift.nc.")
    ] = None,
) -> None:
    """Fit the scale-shift statistics of a dataset and store them with the data."""
    from mlh.file_output import check_output_file
    from mlh.model.config import TrainConfig, load_config
    from mlh.model.scale_shift import write_scale_shift
    from mlh.record.io import record_files
    from mlh.train.statistics import SCALE_SHIFT_FILE, analyze_files

    model = (load_config(config) if config else TrainConfig()).model
    first = Path(dataset[0])
    target = output or (first if first.is_dir() else first.parent) / SCALE_SHIFT_FILE
    check_output_file(target)
    files = record_files(dataset)
    layouts, stats, sizes = analyze_files(files, model)
    write_scale_shift(stats, target)
    typer.echo(
        f"{len(files)} structures, species {list(layouts.numbers)}, "
        f"atoms {int(sizes.n_atoms.min())}-{int(sizes.n_atoms.max())}, "
        f"edges {int(sizes.n_edges.min())}-{int(sizes.n_edges.max())}, "
        f"bonds {int(sizes.n_bonds.min())}-{int(sizes.n_bonds.max())}"
    )
    typer.echo(f"scale-shift statistics written to {target}")


@app.command()
@reports_errors
def partition(
    records: Annotated[list[Path], typer.Argument(help="Record folders or files with H (NetCDF).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder of the slices (a subfolder per record).")],
    axis: Annotated[int, typer.Option(help="Periodic cell axis cut into slices: 0, 1 or 2.")] = 0,
    thickness: Annotated[
        Optional[float], typer.Option(help="Slice thickness in Å (slices are at least this thick).")
    ] = None,
    count: Annotated[Optional[int], typer.Option(help="Number of slices (instead of --thickness).")] = None,
    config: Annotated[
        Optional[Path], typer.Option(help="Training YAML (cutoffs, message passing); default: defaults.")
    ] = None,
) -> None:
    """Cut records into augmented slices (seed 004) for training on structures too large for memory.

    `mlh train` reuses the slices when its data.partition has the same settings and folder.
    """
    from mlh.file_output import check_output_folder
    from mlh.model.config import TrainConfig, load_config, partition_config
    from mlh.record.io import record_files
    from mlh.train.partition_io import partition_files

    check_output_folder(output)
    model = (load_config(config) if config else TrainConfig()).model
    settings = partition_config(axis=axis, thickness=thickness, count=count)
    files = [
        path for record in record_files(records) for path in partition_files(record, settings, model, output, typer.echo)
    ]
    typer.echo(f"{len(files)} slices in {output}")


@app.command("train")
@reports_errors
def train_command(
    config: Annotated[Path, typer.Argument(help="Training YAML (see `mlh template train`).")],
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal).")] = True,
) -> None:
    """Train a model; re-running resumes from the last checkpoint in the run folder."""
    from mlh.file_output import check_output_folder
    from mlh.model.config import load_config
    from mlh.train.loop import train

    settings = load_config(config)
    check_output_folder(settings.output, f"output in {config}")
    predictor = train(settings, progress=progress, log=typer.echo)
    typer.echo(f"model with {predictor.n_parameters} parameters in {settings.output / 'model'}")


@app.command()
@reports_errors
def infer(
    model: Annotated[Path, typer.Argument(help="Model folder (RUN/model).")],
    structures: Annotated[list[Path], typer.Argument(help="ASE-readable files or records (*.nc).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for predicted records.")],
    device: Annotated[str, typer.Option(help="cpu (default) or gpu.")] = "cpu",
    atom_chunk: Annotated[int, typer.Option(min=1, help="Atoms per step.")] = 256,
    bond_chunk: Annotated[int, typer.Option(min=1, help="Bonds per step.")] = 4096,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal).")] = True,
) -> None:
    """Predict Hamiltonian records (H from the model, S exact) for every structure.

    Existing outputs are skipped, so a killed batch resumes; bad inputs are listed and
    give exit code 1 after the other structures are done.
    """
    from mlh.file_output import check_output_folder
    from mlh.inference.prediction import InferenceOptions, infer_files
    from mlh.model.predictor import Predictor

    check_output_folder(output)
    options = InferenceOptions(atom_chunk=atom_chunk, bond_chunk=bond_chunk, device=device)
    predictor = Predictor.load(model)
    results = infer_files(predictor, structures, output, options, progress)
    failed = [r.error for r in results if r.error]
    skipped = sum(r.skipped for r in results)
    typer.echo(f"{len(results) - len(failed) - skipped} records written, {len(failed)} failed, "
               f"{skipped} skipped (finished earlier), to {output}")
    report_failures(failed)


@app.command()
@reports_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model folder (RUN/model).")],
    dataset: Annotated[list[Path], typer.Argument(help="Reference record folders or files.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="NetCDF file of the metrics.")],
    plot: Annotated[Optional[Path], typer.Option(help="Figure of the error distributions (PNG).")] = None,
    window: Annotated[float, typer.Option(help="Eigenvalue window around E_F (eV).")] = 5.0,
    device: Annotated[str, typer.Option(help="cpu (default) or gpu.")] = "cpu",
) -> None:
    """H MAE (all / on-site / off-site / species pair), eigenvalue MAE within E_F +- window,
    and the eigenvalue-spectrum relative L1 error of a model on reference records.

    Bad records are listed after the metrics of the others are written."""
    from mlh.file_output import check_output_file
    from mlh.inference.evaluation import evaluate_pairs, write_evaluation
    from mlh.inference.prediction import InferenceOptions, predict_record
    from mlh.model.predictor import Predictor
    from mlh.record.io import read_record, record_files

    check_output_file(output)
    check_output_file(plot, "--plot")
    options = InferenceOptions(device=device)
    files = record_files(dataset)
    predictor = Predictor.load(model)
    problems: list[str] = []

    def pairs():
        for path in files:
            try:
                reference = read_record(path)
                yield path.stem, predict_record(predictor, reference, str(path), options), reference
            except MLHError as err:
                problems.append(str(err))

    try:
        result = evaluate_pairs(pairs(), window=window)
    except MLHError:
        report_failures(problems)  # every record failed: list why
        raise
    result.attrs.update(predictor.provenance)
    typer.echo(json.dumps(write_evaluation(result, window, output, plot), indent=1))
    typer.echo(f"metrics of {len(files) - len(problems)} records written to {output}, "
               f"{len(problems)} failed")
    report_failures(problems)


@app.command()
@reports_errors
def seal(
    model: Annotated[Path, typer.Argument(help="Model folder without checksums.json.")],
) -> None:
    """Write checksums.json (the files' SHA-256 and the model digest) for a model folder saved
    before digests existed, after checking that it loads. Models saved since carry one."""
    from mlh.model.predictor import seal as seal_model

    typer.echo(f"model digest {seal_model(model)} written to {model / 'checksums.json'}")


@app.command()
@reports_errors
def ensemble(
    output: Annotated[Path, typer.Option("-o", "--output", help="Committee folder to write.")],
    members: Annotated[list[Path], typer.Argument(help="Two or more model folders of one "
                                                       "architecture, species and basis.")],
) -> None:
    """Build a committee model: the mean of the members' predictions (copies of their
    folders). Every command and route that takes a model takes the committee folder."""
    from mlh.model.ensemble import write_ensemble

    digest = write_ensemble(output, members)
    typer.echo(f"committee of {len(members)} models written to {output} (digest {digest[:12]})")
