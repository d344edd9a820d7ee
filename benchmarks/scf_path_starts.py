"""SCF starts along GPAW's own relaxation path: which start needs the fewest iterations.

    .venv/bin/python benchmarks/scf_path_starts.py \
        --path out/physics_sio2/relax_2x2x2_host_gpaw.traj --pairs 0,1 5,6 --walk

For each pair (a, b) of frames of a relaxation trajectory (GPAW's own, e.g. the one
benchmarks/physics_sio2.py writes), GPAW's SCF is converged at frame a from superposed
atoms, then at frame b from each start:
- "gpaw_reuse": frame a's converged state moved with the atoms (GPAW's relaxation reuse,
  `DFT.move_atoms`; what the scf route does after its first step);
- "model": the model's H at b (a correction model: H0(b) + dH(b));
- "model_plus_previous_error": the model's H at b plus the model's error at a
  (H_scf(a) - H_model(a)), i.e. the converged H at a moved by the model's change of H;
- "previous_correction": H0(b) + (H_scf(a) - H0(a)), no model at all;
- "ideal": GPAW's converged H at b (the best any start can do).
With --walk, the whole path is also walked frame by frame twice, interleaved (frame k of
one, then of the other, so both see the same machine load): GPAW's usual way (superposed
atoms at the first frame, then its reuse) and the scf route with
later_start=START_CORRECTED (the model at the first frame, then the model plus its error at
the previous frame); iterations and seconds per frame, with the largest energy difference.
Every SCF runs to GPAW's criteria (examples/sio2_gpaw.yaml by default), so only the
iterations and the wall time differ; energies are compared to GPAW's reuse. GPAW runs
serially in this process. Prints and saves JSON (--out). Units: s, eV, Å.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

from mlh.gpaw.settings import GPAWSettings, load_settings
from mlh.model.predictor import Predictor
from physics.dft.forces import wrapped_record
from physics.dft.functional import BaselineHamiltonian, gpaw_calculation, install_density
from physics.dft.scf import (
    START_ATOMS,
    START_CORRECTED,
    START_HAMILTONIAN,
    START_PREVIOUS,
    ModelSCFRoute,
    SCFResult,
    converge_scf,
)

from _results import write_results
from scf_start import gpaw_usual_path

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "examples/models/sio2_correction")
    parser.add_argument("--settings", type=Path, default=ROOT / "examples/sio2_gpaw.yaml")
    parser.add_argument("--path", type=Path, required=True, help="relaxation trajectory")
    parser.add_argument("--pairs", nargs="*", default=["0,1"], help="frame pairs a,b")
    parser.add_argument("--walk", action="store_true", help="also walk the whole path")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scf_path_starts.json")
    return parser.parse_args()


def model_hamiltonians(route: ModelSCFRoute, atoms: Atoms, dft, baseline: BaselineHamiltonian,
                       kpts: tuple[int, int, int]) -> np.ndarray:
    """The model's H (eV; spin, k, M, M) of `atoms` at the k-points of GPAW's `dft`."""
    record = wrapped_record(route.predicted_record(atoms, "frame"))
    return route.model_hamiltonians(record, kpts, dft, baseline)


def converged(atoms: Atoms, settings: GPAWSettings, kpts,
              start: Callable[[object, BaselineHamiltonian], np.ndarray] | None = None
              ) -> tuple[SCFResult, object, BaselineHamiltonian]:
    """GPAW's SCF of `atoms` from superposed atoms, or from the states of the H (spin, k,
    M, M) that `start` builds from the DFT object and its H0; also those two."""
    begin = time.perf_counter()
    dft = gpaw_calculation(atoms, settings, kpts)
    baseline = BaselineHamiltonian(dft)
    timings = {"setup": time.perf_counter() - begin}
    if start is not None:
        begin = time.perf_counter()
        start_H = start(dft, baseline)
        install_density(dft, lambda k, spin: start_H[spin, baseline.index(k)])
        timings["start"] = time.perf_counter() - begin
    kind = START_ATOMS if start is None else START_HAMILTONIAN
    return converge_scf(dft, kind, forces=False, keep_hamiltonians=True, timings=timings), dft, baseline


def pair_starts(route: ModelSCFRoute, first: Atoms, second: Atoms) -> dict:
    """Iterations and seconds of each start at `second`, after converging `first`."""
    settings = route.settings
    kpts = settings.scf_kpts(first.cell.array, first.pbc)
    at_first, dft, baseline_first = converged(first, settings, kpts)
    model_error = at_first.hamiltonians - model_hamiltonians(route, first, dft, baseline_first,
                                                             kpts)
    correction = at_first.hamiltonians - baseline_first.H0_skMM

    begin = time.perf_counter()
    reuse = converge_scf(dft.move_atoms(second.copy()), START_PREVIOUS, forces=False,
                         keep_hamiltonians=True,
                         timings={"setup": time.perf_counter() - begin})
    model = lambda dft, baseline: model_hamiltonians(route, second, dft, baseline, kpts)
    starts = {
        "model": model,
        "model_plus_previous_error": lambda dft, baseline: model(dft, baseline) + model_error,
        "previous_correction": lambda dft, baseline: baseline.H0_skMM + correction,
        "ideal": lambda dft, baseline: reuse.hamiltonians,
    }
    row = {"max_displacement_angstrom": float(np.abs(second.positions - first.positions).max()),
           "first_frame_iterations_from_atoms": at_first.iterations,
           "gpaw_reuse": {"iterations": reuse.iterations, "seconds": round(reuse.seconds, 2),
                          "timings": {k: round(v, 2) for k, v in reuse.timings.items()}}}
    for name, start in starts.items():
        result = converged(second, settings, kpts, start)[0]
        row[name] = {"iterations": result.iterations, "seconds": round(result.seconds, 2),
                     "timings": {k: round(v, 2) for k, v in result.timings.items()},
                     "energy_difference_eV": abs(result.energy - reuse.energy)}
        print(f"  {name}: {result.iterations} iterations (reuse {reuse.iterations})",
              file=sys.stderr, flush=True)
    return row


def walk(route: ModelSCFRoute, path: list[Atoms]) -> dict:
    """Iterations and seconds per frame of GPAW's usual way and of the corrected scf route."""
    route.predicted_record(path[0], "compile")  # compiles the model, outside the timings
    usual, corrected, energy_difference = [], [], 0.0
    # the generator runs GPAW's SCF of a frame when asked for it: the two alternate
    for frame, (atoms, gpaw) in enumerate(zip(path, gpaw_usual_path(path, route.settings,
                                                                    forces=False))):
        ours = route.evaluate(atoms, forces=False)
        usual.append(gpaw)
        corrected.append(ours)
        energy_difference = max(energy_difference, abs(ours.energy - gpaw.energy))
        print(f"  frame {frame}: GPAW {gpaw.iterations} iterations {gpaw.seconds:.1f} s, "
              f"corrected {ours.iterations} ({ours.start}) {ours.seconds:.1f} s",
              file=sys.stderr, flush=True)
    return {name: {"iterations": [r.iterations for r in results],
                   "seconds": [round(r.seconds, 2) for r in results],
                   "total_iterations": sum(r.iterations for r in results),
                   "total_seconds": round(sum(r.seconds for r in results), 1)}
            for name, results in (("gpaw_usual", usual), ("scf_route_corrected", corrected))
            } | {"frames": len(path), "max_energy_difference_eV": energy_difference}


def main() -> None:
    args = parse_args()
    settings = load_settings(args.settings)
    route = ModelSCFRoute(Predictor.load(args.model), settings, later_start=START_HAMILTONIAN)
    path = read(args.path, ":")
    result = {"benchmark": "scf_path_starts",
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "load_average_start": os.getloadavg()},
              "model": str(args.model), "settings": str(args.settings), "path": str(args.path),
              "pairs": {}}
    for pair in args.pairs:
        a, b = (int(i) for i in pair.split(","))
        print(f"frames {a} -> {b}", file=sys.stderr, flush=True)
        result["pairs"][pair] = pair_starts(route, path[a], path[b])
    if args.walk:
        print("walk", file=sys.stderr, flush=True)
        result["walk"] = walk(ModelSCFRoute(route.predictor, settings,
                                            later_start=START_CORRECTED), path)
    result["machine"]["load_average_end"] = os.getloadavg()
    print(write_results(result, args.out))


if __name__ == "__main__":
    main()
