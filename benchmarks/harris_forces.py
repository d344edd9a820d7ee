"""Would the mean of the Kohn-Sham and Harris-Foulkes energies also give better forces?

    .venv/bin/python benchmarks/physics_sio2.py --model examples/models/sio2_correction \
        --routes dft --relax-methods          # GPAW references and the route's forces (once)
    .venv/bin/python benchmarks/harris_forces.py --model examples/models/sio2_correction \
        --cell 2x2x2_host --components 12 --out benchmarks/results/harris_forces_sio2.json

The dft route's forces are -dA_KS/dR (Kohn-Sham free energy at the model's density, exact);
the Harris-Foulkes free energy A_HF at the same density has no forces in mlh. For a few
force components of one test cell of benchmarks/physics_sio2.py (its WORKDIR holds the cell,
GPAW's SCF forces and the route's forces), this takes central differences (step --step Å) of
both free energies from energy-only dft-route evaluations, and compares -dA_KS/dR (a check of
the differences against the route's exact forces), -dA_HF/dR and their mean with GPAW's SCF
forces. Components are drawn at random (--seed). Units: eV, Å, meV/Å.
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
    atoms = read(args.workdir / f"{args.cell}.extxyz")
    gpaw = np.array(json.loads((args.workdir / f"{args.cell}_gpaw.json").read_text())["forces"])
    route_file = args.workdir / f"model-{predictor.digest[:12]}" / f"{args.cell}_dft.json"
    route = np.array(json.loads(route_file.read_text())["forces"])
    calculator = MLHCalculator.from_gpaw_settings(predictor, load_settings(args.gpaw_config), route="dft")
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(atoms.positions.size, size=args.components, replace=False)
    rows = []
    start = time.perf_counter()
    for flat in picks:
        atom, axis = divmod(int(flat), 3)
        energies = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * args.step
            energies.append(free_energies(calculator, moved))
        (ks_plus, hf_plus), (ks_minus, hf_minus) = energies
        kohn_sham = -(ks_plus - ks_minus) / (2 * args.step)
        harris = -(hf_plus - hf_minus) / (2 * args.step)
        row = {"atom": atom, "axis": axis, "gpaw": gpaw[atom, axis], "route": route[atom, axis],
               "kohn_sham_fd": kohn_sham, "harris_fd": harris, "mean_fd": 0.5 * (kohn_sham + harris)}
        rows.append(row)
        print({k: round(float(v), 4) for k, v in row.items()}, flush=True)

    def mae(key: str) -> float:
        return 1e3 * float(np.mean([abs(r[key] - r["gpaw"]) for r in rows]))

    result = {
        "machine": platform.platform(), "model": str(args.model), "cell": args.cell,
        "step_angstrom": args.step, "components": rows,
        "seconds": time.perf_counter() - start,
        "check_fd_vs_route_max_meV_per_angstrom": 1e3 * max(abs(r["kohn_sham_fd"] - r["route"]) for r in rows),
        "mae_vs_gpaw_meV_per_angstrom": {key: mae(key) for key in ("route", "kohn_sham_fd", "harris_fd", "mean_fd")},
    }
    print(json.dumps(result["mae_vs_gpaw_meV_per_angstrom"]), result["check_fd_vs_route_max_meV_per_angstrom"])
    write_results(result, args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
