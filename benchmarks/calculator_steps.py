"""Step cost of the band-route ASE calculator under ASE's optimizers (bundled WSe2 model).

    .venv/bin/python benchmarks/calculator_steps.py

Relaxes the rattled WSe2 primitive cell (a = 3.32 Å, 4 Å vacuum, rattle 0.08 Å) with BFGS
and FIRE (maxstep 0.05 Å, fmax 0.02 eV/Å, --steps steps) using relax.calculator.
MLHCalculator (band route, fitted repulsion, 2x2x1 k-points, skin 1 Å) and records the
wall time of every energy + force evaluation (the calculator's own `seconds`; timing the
optimizer's property calls would time ASE's cache): the first includes compilation, the later ones reuse the
compiled programs (moves within the skin keep the topology). Goal: a warm step below 2 s.
Prints a JSON summary and saves it to benchmarks/results/calculator_steps.json. Units: s, eV.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from ase.build import mx2
from ase.optimize import BFGS, FIRE

from mlh.model.predictor import Predictor
from relax.calculator import MLHCalculator

from _results import write_results

MODEL = Path(__file__).resolve().parents[1] / "examples" / "models" / "wse2_vacancies"
WARM_STEP_GOAL_SECONDS = 2.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps per run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/calculator_steps.json"))
    return parser.parse_args()


def timed_run(calculator: MLHCalculator, optimizer, steps: int) -> dict:
    """Seconds of each energy + force evaluation along one relaxation, and its energies (eV)."""
    atoms = mx2("WSe2", a=3.32, thickness=3.2, vacuum=4.0)
    atoms.pbc = (True, True, False)
    atoms.rattle(0.08, seed=5)
    atoms.calc = calculator
    energies, seconds = [], []

    def observe():  # after each step's calculation: its own wall time (MLHCalculator.seconds)
        energies.append(atoms.get_potential_energy(force_consistent=True))
        seconds.append(calculator.seconds)

    dynamics = optimizer(atoms, logfile=None, maxstep=0.05)
    dynamics.attach(observe)
    dynamics.run(fmax=0.02, steps=steps)
    warm = max(seconds[1:]) if len(seconds) > 1 else float("nan")
    return {"evaluation_seconds": seconds, "first_seconds": seconds[0], "warm_max_seconds": warm,
            "warm_goal_met": bool(warm < WARM_STEP_GOAL_SECONDS), "energies_eV": energies}


def main() -> None:
    args = parse_args()
    predictor = Predictor.load(args.model)
    calculator = MLHCalculator(predictor, route="band", repulsion=args.model / "repulsion.json",
                               kpts=(2, 2, 1), skin=1.0)
    summary = {"model": str(args.model), "host": platform.node(), "cpu_count": os.cpu_count(),
               "warm_step_goal_seconds": WARM_STEP_GOAL_SECONDS,
               "runs": {opt.__name__: timed_run(calculator, opt, args.steps) for opt in (BFGS, FIRE)}}
    print(write_results(summary, args.out))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
