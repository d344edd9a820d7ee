"""Physics benchmark (issues 4, 17): the model's routes against GPAW SCF on rattled SiO2 with an O vacancy.

    bash examples/make_sio2_dataset.sh            # GPAW data, model and repulsion (once)
    .venv/bin/python benchmarks/physics_sio2.py --model example_output/sio2_training/model
    .venv/bin/python benchmarks/physics_sio2.py --model examples/models/sio2_correction \
        --routes dft scf --relax-methods gpaw dft    # the bundled correction model

Structures (not in the training data): rattled alpha-quartz supercells (default 2x2x2 = 72
atoms and 2x2x3 = 108 atoms) and the same cells with one O removed. For each cell and each
route ("dft": GPAW's Kohn-Sham functional at the model's density with exact forces;
"dft-mean", "dft-harris": the same density with the mean of the Kohn-Sham and Harris-Foulkes
free energies, or the latter alone, and that functional's exact forces; "band":
band energy + fitted repulsion, direct models only; "scf": GPAW's SCF started from the
model's density, so GPAW's results and only the time differs) it reports against one GPAW
SCF of the same structure: energy error (meV/atom; "energy", extrapolated to zero width),
force MAE (meV/Å, over components), and wall time per energy+force evaluation (a cold first
call and a warm second one at slightly moved atoms) against the SCF's. For the relaxation
size it relaxes host and defect with GPAW and with each route (BFGS, --fmax) and reports
Delta Q = sqrt(sum m_i |dr_i|^2) (amu^1/2 Å) and the coordinate MAE (Å) of the relaxed
structures against GPAW's, and the formation energy E_f = E(defect) - E(host) + E_O (E_O =
half a spin-polarised GPAW O2, the same for every route) with its error (meV). For the dft
route it also gives the Harris-Foulkes energy's error and that of the mean of the two
functionals (single points), and the formation energy with each functional at GPAW's relaxed
host and defect (the functional's error alone) and at the dft route's (`dft_functionals`).

Every GPAW SCF, route evaluation and relaxation is stored as it finishes (JSON and ASE
trajectories): GPAW's in WORKDIR, the model's in WORKDIR/model-<first 12 digits of the model
digest>, so another model reuses GPAW's results and never another model's. A killed run
resumes where it stopped (a relaxation from its last finished step, relax.optimize.relax),
and processes with different --relax-methods or --relax-kinds can share WORKDIR (the last
one to finish prints the complete summary). Prints the summary and writes it to
benchmarks/results/physics_sio2.json. Units: eV, Å, meV, s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import write

from mlh.errors import MLHError
from mlh.gpaw.reference import gpaw_parameters
from mlh.gpaw.settings import GPAWSettings, load_settings
from mlh.gpaw.structures import quartz_with_vacancy
from mlh.grids import parse_grid
from mlh.model.predictor import Predictor
from physics.dft.functional import harris_share
from relax.calculator import MLHCalculator
from relax.optimize import relax

from _results import write_results

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ structures and caching
def test_cells(repeat: tuple[int, int, int], seed: int, rattle: float) -> dict[str, Atoms]:
    """A rattled quartz host and the same cell with one O removed."""
    rng = np.random.default_rng(seed)
    host = quartz_with_vacancy(rng, repeat=repeat, max_strain=0.0, rattle=rattle,
                               vacancy_probability=0.0)
    oxygen = np.flatnonzero(host.numbers == 8)
    defect = host.copy()
    del defect[int(rng.choice(oxygen))]
    return {"host": host, "defect": defect}


def cached(path: Path, compute) -> dict:
    """The JSON at `path`, or compute() written there atomically."""
    if path.exists():
        return json.loads(path.read_text())
    result = compute()
    write_results(result, path)
    return result


def gpaw_calculator(atoms: Atoms, settings: GPAWSettings, log: Path):
    from gpaw.new.ase_interface import GPAW

    kpts = settings.scf_kpts(atoms.cell.array, atoms.pbc)
    return GPAW(**gpaw_parameters(atoms, settings, kpts), txt=str(log),
                symmetry={"point_group": False, "time_reversal": True})


def single_point(atoms: Atoms, calculator, forces: bool = True) -> dict:
    """Energy (eV), forces (eV/Å; unless `forces` is False) and wall time of one calculation."""
    start = time.perf_counter()
    atoms = atoms.copy()
    atoms.calc = calculator
    point = {"forces": atoms.get_forces().tolist()} if forces else {}
    point = {"energy": float(atoms.get_potential_energy()), **point,
             "seconds": time.perf_counter() - start}
    result = getattr(calculator, "last_result", None)
    if getattr(result, "harris_energy", None) is not None:  # the dft route's functionals
        point["kohn_sham_energy"] = float(result.energy)
        point["harris_energy"] = float(result.harris_energy)
    if getattr(result, "iterations", None) is not None:  # the scf route's, from the model
        point["scf_iterations"] = int(result.iterations)
    if getattr(result, "timings", None):
        point["timings"] = {name: round(float(t), 2) for name, t in result.timings.items()}
    return point


def gpaw_iterations(log: Path) -> int | None:
    """SCF iterations in a GPAW text log (None without the log)."""
    if not log.exists():
        return None
    return sum(line.startswith("|iter:") for line in log.read_text().splitlines())


def relaxation(atoms: Atoms, calculator, fmax: float, steps: int, trajectory: Path) -> dict:
    """A relaxation's result, or its error (e.g. the route drove atoms together) as `failed`."""
    start = time.perf_counter()
    try:
        result = relax(atoms, calculator, fmax=fmax, steps=steps, trajectory=trajectory)
    except MLHError as error:
        return {"failed": str(error), "seconds": time.perf_counter() - start}
    return {"energy": float(result.energies[-1]), "positions": result.atoms.positions.tolist(),
            "steps": result.steps, "converged": result.converged, "seconds": result.seconds,
            "max_force": float(result.max_forces[-1])}


# ------------------------------------------------------------------ comparisons
def displacements(a: np.ndarray, b: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Minimum-image displacements b - a (Å) in a periodic cell."""
    from ase.geometry import find_mic

    return find_mic(np.asarray(b) - np.asarray(a), cell, pbc=True)[0]


def structure_errors(atoms: Atoms, positions: np.ndarray, reference: np.ndarray) -> dict:
    d = displacements(reference, positions, atoms.cell.array)
    return {"delta_Q_amu_half_angstrom": float(np.sqrt(np.sum(atoms.get_masses()[:, None] * d**2))),
            "coordinate_mae_angstrom": float(np.abs(d).mean()),
            "max_displacement_angstrom": float(np.linalg.norm(d, axis=1).max())}


def point_errors(route: dict, reference: dict, n_atoms: int) -> dict:
    """Energy error (meV/atom; the route's functional, and for the dft routes each of Kohn-Sham,
    Harris-Foulkes and their mean) and force MAE (meV/Å) of a route's single point."""
    errors = {"energy_error_meV_per_atom": 1e3 * (route["energy"] - reference["energy"]) / n_atoms,
              "force_mae_meV_per_angstrom": 1e3 * float(np.abs(
                  np.array(route["forces"]) - np.array(reference["forces"])).mean())}
    if "harris_energy" in route:  # results of before 2026-12-07 lack "kohn_sham_energy": "dft"
        kohn_sham = 1e3 * (route.get("kohn_sham_energy", route["energy"])
                           - reference["energy"]) / n_atoms
        harris = 1e3 * (route["harris_energy"] - reference["energy"]) / n_atoms
        errors["kohn-sham_energy_error_meV_per_atom"] = kohn_sham
        errors["harris_energy_error_meV_per_atom"] = harris
        errors["mean_energy_error_meV_per_atom"] = 0.5 * (kohn_sham + harris)
    return errors


# ------------------------------------------------------------------ the benchmark
def route_name(name: str) -> str:
    """A route this benchmark runs: "dft" (Kohn-Sham functional), "band", "scf", or
    "dft-<functional>" (a name or Harris-Foulkes share of physics.dft.functional.harris_share).

    Raises:
        argparse.ArgumentTypeError: anything else."""
    route, _, functional = name.partition("-")
    try:
        if route not in ("dft", "band", "scf") or (functional and route != "dft"):
            raise MLHError(f"unknown route {name!r}")
        if functional:
            harris_share(functional)
    except MLHError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return name


def route_calculator(predictor: Predictor, settings: GPAWSettings, route: str,
                     model: Path) -> MLHCalculator:
    """The calculator of a `route_name`, with the settings of the model's GPAW data."""
    name, _, functional = route.partition("-")
    options = {"functional": functional} if functional else {}
    if name == "band":
        options["repulsion"] = model / "repulsion.json"
    return MLHCalculator.from_gpaw_settings(predictor, settings, route=name, **options)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="SiO2 model folder "
                        "(with repulsion.json for the band route)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "out" / "physics_sio2")
    parser.add_argument("--gpaw-config", type=Path, default=ROOT / "examples" / "sio2_gpaw.yaml")
    parser.add_argument("--sizes", nargs="*", default=["2x2x2", "2x2x3"],
                        help="single-point cells (none: relaxations only)")
    parser.add_argument("--relax-size", default="2x2x2")
    parser.add_argument("--routes", nargs="*", default=["dft", "band"], type=route_name,
                        help="routes to evaluate (none: GPAW's side only, no model needed): "
                        "dft, band, scf, or dft-<functional> (mean, harris or a Harris-Foulkes "
                        "share such as 0.41): the dft route with that functional's energy and "
                        "forces")
    parser.add_argument("--relax-methods", nargs="*", default=["gpaw", "dft", "band"],
                        type=lambda name: name if name == "gpaw" else route_name(name),
                        help="relaxations to run, gpaw or a route (several "
                        "processes can share WORKDIR with different methods)")
    parser.add_argument("--relax-kinds", nargs="*", default=["host", "defect"],
                        choices=["host", "defect"], help="cells to relax (two processes can "
                        "relax host and defect side by side, one core each)")
    parser.add_argument("--fmax", type=float, default=0.05, help="eV/Å")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rattle", type=float, default=0.05, help="Å")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" /
                        "physics_sio2.json")
    return parser.parse_args()


def oxygen_reference(settings: GPAWSettings, workdir: Path) -> dict:
    """E_O = E(O2) / 2 from a spin-polarised GPAW O2 in a 10 Å box (eV)."""
    def compute():
        o2 = Atoms("O2", positions=[[0, 0, 0], [0, 0, 1.21]], cell=[10.0, 10.2, 10.4])
        o2.center()
        o2.set_initial_magnetic_moments([1.0, 1.0])
        spin = settings.model_copy(update={"spinpol": True, "kpts": (1, 1, 1)})
        point = single_point(o2, gpaw_calculator(o2, spin, workdir / "O2.txt"))
        return {"energy_per_atom": point["energy"] / 2, "seconds": point["seconds"]}
    return cached(workdir / "O2.json", compute)


def main() -> None:
    args = parse_args()
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    settings = load_settings(args.gpaw_config)
    predictor = Predictor.load(args.model) if args.routes else None
    model_dir = workdir / f"model-{predictor.digest[:12]}" if predictor and predictor.digest else workdir
    model_dir.mkdir(exist_ok=True)
    calculators = {route: route_calculator(predictor, settings, route, args.model)
                   for route in args.routes}
    summary: dict = {"model": str(args.model), "model_digest": predictor.digest if predictor else None,
                     "fmax_eV_per_angstrom": args.fmax,
                     "rattle_angstrom": args.rattle, "host": platform.node(),
                     "cpu_count": os.cpu_count(), "cells": {}}
    for size in args.sizes:
        repeat = parse_grid(size, "--sizes")
        for kind, atoms in test_cells(repeat, args.seed, args.rattle).items():
            name = f"{size}_{kind}"
            write(workdir / f"{name}.extxyz", atoms)
            print(f"{name}: {len(atoms)} atoms", flush=True)
            reference = cached(workdir / f"{name}_gpaw.json", lambda: single_point(
                atoms, gpaw_calculator(atoms, settings, workdir / f"{name}_gpaw.txt")))
            cell = {"atoms": len(atoms), "gpaw_scf_seconds": reference["seconds"],
                    "gpaw_scf_iterations": gpaw_iterations(workdir / f"{name}_gpaw.txt"),
                    "routes": {}}
            for route, calculator in calculators.items():
                def evaluate(atoms=atoms, calculator=calculator):
                    cold = single_point(atoms, calculator)
                    moved = atoms.copy()
                    moved.rattle(0.01, seed=1)
                    warm = single_point(moved, calculator)
                    return {**cold, "cold_seconds": cold["seconds"], "seconds": warm["seconds"],
                            **({"timings": warm["timings"]} if "timings" in warm else {}),
                            **({"warm_scf_iterations": warm["scf_iterations"]}
                               if "scf_iterations" in warm else {})}
                point = cached(model_dir / f"{name}_{route}.json", evaluate)
                cell["routes"][route] = {**point_errors(point, reference, len(atoms)),
                                         "seconds_per_evaluation": point["seconds"],
                                         "first_call_seconds": point["cold_seconds"]}
                for key in ("scf_iterations", "warm_scf_iterations", "timings"):
                    if key in point:
                        cell["routes"][route][key] = point[key]
                print(f"  {route}: {cell['routes'][route]}", flush=True)
            summary["cells"][name] = cell
    summary["relaxation"] = relaxation_benchmark(args, settings, calculators, workdir, model_dir)
    summary["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(write_results(summary, args.output))
    print(f"written to {args.output}")


def relaxation_benchmark(args, settings: GPAWSettings, calculators: dict, workdir: Path,
                         model_dir: Path) -> dict:
    """Relax host and defect with GPAW and each route; structures and formation energies
    (GPAW's files in `workdir`, the routes' in `model_dir`)."""
    repeat = parse_grid(args.relax_size, "--relax-size")
    cells = test_cells(repeat, args.seed, args.rattle)
    oxygen = oxygen_reference(settings, workdir)["energy_per_atom"]
    runs: dict[str, dict[str, dict]] = {}
    for method in ["gpaw", *calculators]:
        runs[method] = {}
        for kind, atoms in cells.items():
            name = f"relax_{args.relax_size}_{kind}_{method}"
            folder = workdir if method == "gpaw" else model_dir
            path = folder / f"{name}.json"
            if method not in args.relax_methods or kind not in args.relax_kinds:
                if path.exists():
                    runs[method][kind] = json.loads(path.read_text())
                continue
            print(f"{name} ...", flush=True)
            calculator = (gpaw_calculator(atoms, settings, workdir / f"{name}.txt")
                          if method == "gpaw" else calculators[method])
            runs[method][kind] = cached(path, lambda: relaxation(
                atoms, calculator, args.fmax, args.steps, folder / f"{name}.traj"))
    result: dict = {"size": args.relax_size, "oxygen_reference_eV": oxygen, "methods": {}}
    complete = {method: pair for method, pair in runs.items() if len(pair) == len(cells)}
    for method, pair in complete.items():
        failed = {kind: run["failed"] for kind, run in pair.items() if "failed" in run}
        if failed:
            result["methods"][method] = {f"{kind}_failed": error for kind, error in failed.items()}
            continue
        formation = pair["defect"]["energy"] - pair["host"]["energy"] + oxygen
        entry = {"formation_energy_eV": formation,
                 **{f"{kind}_{key}": run[key] for kind, run in pair.items()
                    for key in ("steps", "converged", "seconds", "max_force")}}
        if method != "gpaw" and "gpaw" in result["methods"] and \
                "formation_energy_eV" in result["methods"]["gpaw"]:
            entry["formation_energy_error_meV"] = 1e3 * (
                formation - result["methods"]["gpaw"]["formation_energy_eV"])
            for kind, atoms in cells.items():
                entry[kind] = structure_errors(atoms, np.array(pair[kind]["positions"]),
                                               np.array(runs["gpaw"][kind]["positions"]))
        result["methods"][method] = entry
    if "formation_energy_eV" in result["methods"].get("gpaw", {}):  # baseline: no relaxation
        result["start_vs_gpaw_relaxed"] = {kind: structure_errors(
            atoms, atoms.positions, np.array(runs["gpaw"][kind]["positions"]))
            for kind, atoms in cells.items()}
        if "dft" in calculators:
            relaxed = {"gpaw": runs["gpaw"]}
            if "formation_energy_eV" in result["methods"].get("dft", {}):
                relaxed["dft"] = runs["dft"]
            result["dft_functionals"] = {
                f"at_{method}_geometries": formation_by_functional(
                    args, cells, pair, method, calculators["dft"], oxygen,
                    result["methods"]["gpaw"]["formation_energy_eV"], model_dir)
                for method, pair in relaxed.items()}
    return result


def formation_by_functional(args, cells: dict, relaxed: dict, method: str, calculator,
                            oxygen: float, gpaw_formation: float, model_dir: Path) -> dict:
    """The dft route's formation energy error (meV) with each energy functional (Kohn-Sham,
    Harris-Foulkes, their mean) at the host and defect relaxed by `method` (two single
    points): at GPAW's geometries the functional's error alone; at the dft route's own (its
    BFGS steps use forces only, the Kohn-Sham ones, so they are the same for every
    functional) what a relaxation reporting that functional gives."""
    points = {}
    for kind, atoms in cells.items():
        moved = atoms.copy()
        moved.positions = np.array(relaxed[kind]["positions"])
        name = f"{method}_relaxed_{args.relax_size}_{kind}_dft.json"
        points[kind] = cached(model_dir / name,
                              lambda moved=moved: single_point(moved, calculator, forces=False))
    out = {}
    for functional, key in (("kohn-sham", "energy"), ("harris", "harris_energy")):
        formation = points["defect"][key] - points["host"][key] + oxygen
        out[f"{functional}_formation_energy_error_meV"] = 1e3 * (formation - gpaw_formation)
    out["mean_formation_energy_error_meV"] = 0.5 * (out["kohn-sham_formation_energy_error_meV"]
                                                    + out["harris_formation_energy_error_meV"])
    return out


if __name__ == "__main__":
    main()
