"""Library side of the relaxation drivers: options, provenance, resumable relax-and-write.

`relax_and_write` relaxes a structure with any ASE calculator and writes NAME.traj, NAME.nc
and NAME-relaxed.extxyz atomically, reading back a converged relaxation of the same start
structure, calculator (model digest included), criterion and optimizer instead of redoing
it. The example scripts (examples/relax_structure.py, defect_formation.py, fit_repulsion.py)
are thin command lines over these functions. Units: eV, Å.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Protocol

from ase import Atoms

from mlh.errors import MLHError
from mlh.grids import parse_grid

__all__ = [
    "RelaxOptions", "parse_kpts", "read_frame", "add_calculator_arguments", "make_calculator",
    "file_digest", "calculator_attrs", "finished_relaxation", "relax_and_write", "run_command",
]


class RelaxOptions(Protocol):
    """What a relaxation needs to know (argparse's Namespace of the drivers has it)."""

    fmax: float
    """Force criterion (eV/Å)."""
    steps: int
    """Most optimizer steps."""
    optimizer: str
    """BFGS or FIRE."""


def parse_kpts(text: str | None) -> tuple[int, int, int] | None:
    """"2x2x1" -> (2, 2, 1); None stays None (k-point density 2 / Å^-1)."""
    if text is None:
        return None
    return parse_grid(text, "--kpts")  # type: ignore[return-value]


def read_frame(path: str | Path) -> Atoms:
    """The last frame of an ASE-readable file; MLHError if missing or unreadable."""
    from mlh.gpaw.generate import read_structures

    return read_structures([Path(path)])[-1][2]


def add_calculator_arguments(parser: argparse.ArgumentParser, default_model: Path) -> None:
    """Options of the calculator (model folder, route, k-points, width) and of the relaxation
    (fmax in eV/Å, steps, optimizer), as the example drivers take them."""
    parser.add_argument("--model", type=Path, default=default_model, help="model folder")
    parser.add_argument("--route", choices=["dft", "band", "scf"], default="dft",
                        help="dft: GPAW's functional at the model's density (accurate); "
                             "band: band energy + repulsion (fast); scf: GPAW's own SCF "
                             "started from the model's density (exact GPAW results)")
    parser.add_argument("--functional", default="kohn-sham", help="dft route: the functional "
                        "whose energy and forces are used: kohn-sham (GPAW's Kohn-Sham "
                        "functional at the model's density, variational), harris "
                        "(Harris-Foulkes), mean, a Harris-Foulkes share s in [0, 1] "
                        "((1 - s) Kohn-Sham + s Harris), or fitted (the share stored in the "
                        "model folder, fitted on its validation records; docs/physics.md)")
    parser.add_argument("--repulsion", type=Path, default=None,
                        help="repulsion JSON (band route; default MODEL/repulsion.json)")
    parser.add_argument("--kpts", default=None, help="Monkhorst-Pack grid, e.g. 2x2x1 "
                        "(default: 2 k-points per reciprocal Å)")
    parser.add_argument("--width", type=float, default=0.01, help="Fermi-Dirac width (eV)")
    parser.add_argument("--maxiter", type=int, default=300,
                        help="scf route: most SCF iterations per step")
    parser.add_argument("--scf-start", choices=["previous", "corrected", "hamiltonian"],
                        default="previous", help="scf route: how each step after the first "
                        "starts: previous (GPAW's reuse of the last converged state), "
                        "corrected (the model plus its error at the last step) or "
                        "hamiltonian (the model alone)")
    parser.add_argument("--fmax", type=float, default=0.02, help="force criterion (eV/Å)")
    parser.add_argument("--steps", type=int, default=200, help="most optimizer steps")
    parser.add_argument("--optimizer", choices=["BFGS", "FIRE"], default="BFGS")


def make_calculator(args: argparse.Namespace):
    """MLHCalculator from the parsed options (loads the model)."""
    from relax.calculator import MLHCalculator

    return MLHCalculator(args.model, route=args.route, repulsion=args.repulsion,
                         kpts=parse_kpts(args.kpts), width=args.width, maxiter=args.maxiter,
                         scf_later_start=args.scf_start, functional=args.functional)


def file_digest(paths: list[Path]) -> str:
    """SHA-256 of the files' contents, in order (identifies a model's parameters)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def calculator_attrs(args: argparse.Namespace) -> dict:
    """Provenance attributes of a run: model (folder and content digest: its files, or a
    committee's member digests, with the fitted Harris share's file where the dft route
    reads it), route (and the dft route's functional), k-points."""
    from mlh.model.integrity import MODEL_FILES
    from mlh.model.predictor import ENSEMBLE_FILE

    model = Path(args.model)
    # a committee's ensemble.json holds its members' model digests
    files = [model / name for name in (*MODEL_FILES, ENSEMBLE_FILE)]
    attrs = {"model": str(model), "route": args.route,
             "kpts": args.kpts or "density 2/Å^-1", "width_eV": args.width}
    if args.route == "dft":
        attrs["functional"] = args.functional
        if args.functional == "fitted":  # the share is read from the model folder
            from physics.dft.functional import FITTED_SHARE_FILE

            files.append(model / FITTED_SHARE_FILE)
    if args.route == "band":
        repulsion = Path(args.repulsion or model / "repulsion.json")
        attrs["repulsion"] = str(repulsion)
        files.append(repulsion)
    attrs["model_sha256"] = file_digest([f for f in files if f.exists()])
    return attrs


def finished_relaxation(atoms: Atoms, args: RelaxOptions, output: Path, name: str, attrs: dict):
    """The finished result in OUT/NAME.nc of the same start structure, calculator (model
    digest included), criterion and optimizer, else None (then the relaxation runs).

    Finished: converged, or stopped at this run's step limit (a rerun would repeat it)."""
    import xarray as xr
    from ase.io import read

    from relax.optimize import relaxation_from_dataset, same_structure

    dataset_path, trajectory = output / f"{name}.nc", output / f"{name}.traj"
    if not (dataset_path.exists() and trajectory.exists()):
        return None
    with xr.open_dataset(dataset_path) as dataset:
        dataset = dataset.load()
    expected = {**{f"provenance_{key}": value for key, value in attrs.items()},
                "optimizer": args.optimizer, "fmax_eV_per_angstrom": args.fmax}
    if any(dataset.attrs.get(key) != value for key, value in expected.items()):
        return None
    if not (dataset.attrs.get("converged") or dataset.attrs.get("steps", 0) >= args.steps):
        return None
    if not same_structure(read(trajectory, 0), atoms):
        return None
    return relaxation_from_dataset(dataset)


def relax_and_write(atoms: Atoms, calculator, args: RelaxOptions, output: Path, name: str,
                    attrs: dict):
    """Relax `atoms`; write OUT/NAME.traj, NAME.nc and NAME-relaxed.extxyz atomically.

    A relaxation finished before (`finished_relaxation`) is read back, not redone."""
    from ase.io import write

    from mlh.file_output import atomic_output
    from mlh.record.io import write_dataset
    from relax.optimize import relax, relaxation_dataset

    result = finished_relaxation(atoms, args, output, name, attrs)
    if result is not None:
        print(f"{name}: relaxed before ({output / f'{name}.nc'}), E = "
              f"{result.energies[-1]:.6f} eV after {result.steps} steps")
        return result
    result = relax(atoms, calculator, fmax=args.fmax, steps=args.steps, optimizer=args.optimizer,
                   trajectory=output / f"{name}.traj")
    write_dataset(relaxation_dataset(result, attrs), output / f"{name}.nc")
    with atomic_output(output / f"{name}-relaxed.extxyz") as tmp:
        write(tmp, result.atoms, format="extxyz")
    state = "converged" if result.converged else "NOT converged"
    print(f"{name}: E = {result.energies[-1]:.6f} eV after {result.steps} steps, max force "
          f"{result.max_forces[-1]:.4f} eV/Å ({state}, {result.seconds:.1f} s)")
    if not result.converged:
        print(f"warning: {name} did not reach max force {args.fmax} eV/Å in {args.steps} "
              f"steps; its last energy is used", file=sys.stderr)
    return result


def run_command(run, parse_args, argv: list[str] | None) -> int:
    """Parse, run, and turn an MLHError into one `error:` line and exit code 1."""
    args = parse_args(argv)
    try:
        run(args)
    except MLHError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0
