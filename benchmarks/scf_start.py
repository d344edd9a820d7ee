"""GPAW's SCF started from the model's density vs its usual start: iterations and wall time.

    .venv/bin/python benchmarks/scf_start.py
    .venv/bin/python benchmarks/scf_start.py --structures 3 --relax-steps 6    # more

Structures: rattled WSe2 3x2 cells with Se vacancies (`mlh recipe wse2 --repeat 3x2`,
seeds --seed, --seed + 1, ...); GPAW settings examples/wse2_gpaw.yaml; model
examples/models/wse2_vacancies. GPAW runs serially in this process, so all times are
comparable within one run.

Single points, per structure, each a full SCF to GPAW's criteria with forces:
- "atoms": GPAW's usual start (superposed atomic densities);
- "model": started from the model's density (physics.dft.scf.ModelSCFRoute; its time
  includes the prediction, the model compiled before timing, `model_compile_seconds`);
- "ideal": started from GPAW's own converged H (the best any model can do).
Relaxation (first structure, BFGS, --relax-steps steps): the scf route with reuse
(MLHCalculator(route="scf"): model start, then the previous converged state) drives
BFGS; the same geometries are then recomputed by GPAW's usual way (atomic start, then
GPAW's own reuse) and by the model start at every later step (the first is the reuse
run's own model start). Progress goes to stderr; prints and saves JSON to
benchmarks/results/scf_start.json. Units: s, eV, eV/Å.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ase.optimize import BFGS

from mlh.gpaw.settings import load_settings
from mlh.gpaw.structures import wse2_with_vacancies
from mlh.model.predictor import Predictor
from physics.dft.functional import gpaw_calculation
from physics.dft.scf import (
    START_ATOMS,
    START_HAMILTONIAN,
    START_PREVIOUS,
    ModelSCFRoute,
    SCFResult,
    converge_scf,
    run_scf,
)
from relax.calculator import MLHCalculator

from _results import write_results

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "examples/models/wse2_vacancies")
    parser.add_argument("--settings", type=Path, default=ROOT / "examples/wse2_gpaw.yaml")
    parser.add_argument("--structures", type=int, default=1, help="single-point structures")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--relax-steps", type=int, default=2, help="BFGS steps (0: none)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scf_start.json")
    return parser.parse_args()


def summary(result: SCFResult) -> dict:
    return {"iterations": result.iterations, "seconds": round(result.seconds, 2),
            "timings": {k: round(v, 2) for k, v in result.timings.items()},
            "energy_eV": result.energy, "free_energy_eV": result.free_energy}


def agreement(result: SCFResult, reference: SCFResult) -> dict:
    return {"energy_difference_eV": abs(result.energy - reference.energy),
            "max_force_difference_eV_per_angstrom":
                float(np.abs(result.forces - reference.forces).max())}


def progress(label: str, result: SCFResult) -> SCFResult:
    print(f"{label}: {result.iterations} iterations, {result.seconds:.1f} s", file=sys.stderr,
          flush=True)
    return result


def single_point(atoms, settings, route: ModelSCFRoute, label: str) -> dict:
    kpts = settings.scf_kpts(atoms.cell.array, atoms.pbc)
    usual = progress(f"{label} atoms", run_scf(atoms, settings, kpts=kpts, keep_hamiltonians=True))
    model = progress(f"{label} model", route.evaluate(atoms))
    ideal = progress(f"{label} ideal", run_scf(atoms, settings, usual.hamiltonian_k, kpts=kpts))
    return {"atoms": len(atoms), "kpts": list(kpts),
            "max_force_eV_per_angstrom": float(np.linalg.norm(usual.forces, axis=1).max()),
            "atoms_start": summary(usual),
            "model_start": {**summary(model), **agreement(model, usual)},
            "ideal_start": {**summary(ideal), **agreement(ideal, usual)}}


def gpaw_usual_path(path, settings, forces: bool = True) -> Iterator[SCFResult]:
    """GPAW's own way along a path, one SCF per frame as it is asked for: atomic start,
    then the previous state moved."""
    dft = None
    for step, atoms in enumerate(path):
        begin = time.perf_counter()
        if dft is None:
            dft = gpaw_calculation(atoms, settings, settings.scf_kpts(atoms.cell.array, atoms.pbc))
            start = START_ATOMS
        else:
            dft = dft.move_atoms(atoms.copy())
            start = START_PREVIOUS
        yield progress(f"relaxation step {step} gpaw", converge_scf(
            dft, start, forces=forces, timings={"setup": time.perf_counter() - begin}))


def relaxation(atoms, settings, route: ModelSCFRoute, steps: int) -> dict:
    calculator = MLHCalculator.from_gpaw_settings(route.predictor, settings, route="scf")
    atoms = atoms.copy()
    atoms.calc = calculator
    path, reuse = [], []

    def observe():
        path.append(atoms.copy())
        reuse.append(progress(f"relaxation step {len(path) - 1} model+reuse",
                              calculator.last_result))

    optimizer = BFGS(atoms, logfile=None)
    optimizer.attach(observe)
    optimizer.run(fmax=0.02, steps=steps)
    usual = list(gpaw_usual_path(path, settings))
    each = reuse[:1] + [progress(f"relaxation step {step} model", route.evaluate(a))
                        for step, a in enumerate(path[1:], start=1)]
    variants = {"gpaw_usual": usual, "model_then_reuse": reuse, "model_every_step": each}
    table = {name: {"iterations": [r.iterations for r in results],
                    "seconds": [round(r.seconds, 2) for r in results],
                    "total_iterations": sum(r.iterations for r in results),
                    "total_seconds": round(sum(r.seconds for r in results), 1)}
             for name, results in variants.items()}
    table["max_force_eV_per_angstrom"] = [float(np.linalg.norm(r.forces, axis=1).max())
                                          for r in usual]
    table["max_energy_difference_eV"] = max(
        abs(r.energy - u.energy) for name in ("model_then_reuse", "model_every_step")
        for r, u in zip(variants[name], usual))
    return table


def main() -> None:
    args = parse_args()
    settings = load_settings(args.settings)
    route = ModelSCFRoute(Predictor.load(args.model), settings, later_start=START_HAMILTONIAN)
    structures = [wse2_with_vacancies(np.random.default_rng(args.seed + i))
                  for i in range(args.structures)]
    begin = time.perf_counter()
    route.predicted_record(structures[0], "compile")  # compiles the model, outside the timings
    compile_seconds = time.perf_counter() - begin
    result = {
        "benchmark": "scf_start",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "load_average_start": os.getloadavg()},
        "model": str(args.model), "settings": str(args.settings),
        "model_compile_seconds": round(compile_seconds, 1),
        "single_points": [single_point(atoms, settings, route, f"structure {i}")
                          for i, atoms in enumerate(structures)],
    }
    if args.relax_steps > 0:
        result["relaxation"] = relaxation(structures[0], settings, route, args.relax_steps)
    result["machine"]["load_average_end"] = os.getloadavg()
    print(write_results(result, args.out))


if __name__ == "__main__":
    main()
