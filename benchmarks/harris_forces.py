"""Are the dft route's Harris-Foulkes and mean forces -dA/dR on a real test cell, and how close
are they to GPAW's?

    .venv/bin/python benchmarks/physics_sio2.py --model examples/models/sio2_correction \
        --routes dft --relax-methods          # GPAW references (once)
    .venv/bin/python benchmarks/harris_forces.py --model examples/models/sio2_correction \
        --cell 2x2x2_host --components 12 --out benchmarks/results/harris_forces_sio2.json

For one test cell of benchmarks/physics_sio2.py (its WORKDIR holds the cell and GPAW's SCF
forces) this computes the route's analytic forces with each functional (Kohn-Sham, Harris-
Foulkes, their mean; physics.dft.harris_forces) and, on a few force components drawn at
random (--seed), central differences of the Kohn-Sham and Harris-Foulkes free energies from
energy-only evaluations (steps --step and half of it, Richardson-extrapolated: 4 evaluations
per component). It reports the largest difference between analytic forces and differences
per functional, and the MAE
of each functional's forces against GPAW's SCF forces, over all components (analytic) and over
the drawn ones (both). Units: eV, Å, meV/Å.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from ase.io import read

from mlh.gpaw.settings import load_settings
from mlh.model.predictor import Predictor
from physics.dft.functional import FUNCTIONALS
from relax.calculator import MLHCalculator

from _results import write_results

ROOT = Path(__file__).resolve().parents[1]


def free_energies(calculator: MLHCalculator, atoms) -> tuple[float, float]:
    """(Kohn-Sham, Harris-Foulkes) free energies (eV) of the dft route at `atoms`."""
    atoms = atoms.copy()
    atoms.calc = calculator
    atoms.get_potential_energy()
    result = calculator.last_result
    return result.free_energy, result.harris_free_energy


def central_differences(calculator: MLHCalculator, atoms, atom: int, axis: int,
                        step: float) -> tuple[float, float]:
    """-dA/dR of the Kohn-Sham and Harris-Foulkes free energies (eV/Å) along one component,
    by central differences with `step` (Å)."""
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[atom, axis] += sign * step
        energies.append(free_energies(calculator, moved))
    (ks_plus, hf_plus), (ks_minus, hf_minus) = energies
    return -(ks_plus - ks_minus) / (2 * step), -(hf_plus - hf_minus) / (2 * step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=ROOT / "out" / "physics_sio2")
    parser.add_argument("--gpaw-config", type=Path, default=ROOT / "examples" / "sio2_gpaw.yaml")
    parser.add_argument("--cell", default="2x2x2_host")
    parser.add_argument("--components", type=int, default=12)
    parser.add_argument("--step", type=float, default=0.01, help="Å")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    predictor = Predictor.load(args.model)
    settings = load_settings(args.gpaw_config)
    atoms = read(args.workdir / f"{args.cell}.extxyz")
    gpaw = np.array(json.loads((args.workdir / f"{args.cell}_gpaw.json").read_text())["forces"])
    analytic, seconds = {}, {}
    for functional in FUNCTIONALS:
        calculator = MLHCalculator.from_gpaw_settings(predictor, settings, route="dft",
                                                      functional=functional)
        start = time.perf_counter()
        analytic[functional] = calculator.get_forces(atoms.copy())
        seconds[functional] = time.perf_counter() - start
        print(functional, f"{seconds[functional]:.1f} s", calculator.last_result.timings,
              flush=True)
    calculator = MLHCalculator.from_gpaw_settings(predictor, settings, route="dft")
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(atoms.positions.size, size=args.components, replace=False)
    rows = []
    start = time.perf_counter()
    for flat in picks:
        atom, axis = divmod(int(flat), 3)
        estimates = [central_differences(calculator, atoms, atom, axis, step)
                     for step in (args.step, args.step / 2)]
        kohn_sham, harris = ((4 * fine - coarse) / 3 for coarse, fine in zip(*estimates))
        row = {"atom": atom, "axis": axis, "gpaw": gpaw[atom, axis],
               **{f"{name}_fd": value for name, value in
                  (("kohn-sham", kohn_sham), ("harris", harris),
                   ("mean", 0.5 * (kohn_sham + harris)))},
               **{name: analytic[name][atom, axis] for name in FUNCTIONALS}}
        rows.append(row)
        print({k: round(float(v), 4) for k, v in row.items()}, flush=True)

    def drawn_mae(key: str) -> float:
        return 1e3 * float(np.mean([abs(r[key] - r["gpaw"]) for r in rows]))

    result = {
        "machine": platform.platform(), "model": str(args.model), "cell": args.cell,
        "step_angstrom": args.step, "components": rows,
        "analytic_seconds": seconds, "fd_seconds": time.perf_counter() - start,
        "analytic_vs_fd_max_meV_per_angstrom": {
            name: 1e3 * max(abs(r[name] - r[f"{name}_fd"]) for r in rows) for name in FUNCTIONALS},
        "mae_vs_gpaw_meV_per_angstrom": {
            name: 1e3 * float(np.abs(analytic[name] - gpaw).mean()) for name in FUNCTIONALS},
        "drawn_mae_vs_gpaw_meV_per_angstrom": {
            key: drawn_mae(key) for name in FUNCTIONALS for key in (name, f"{name}_fd")},
    }
    print(json.dumps({key: result[key] for key in ("analytic_vs_fd_max_meV_per_angstrom",
                                                   "mae_vs_gpaw_meV_per_angstrom",
                                                   "drawn_mae_vs_gpaw_meV_per_angstrom")}))
    write_results(result, args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
