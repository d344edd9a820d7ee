"""Large-structure analysis (analysis/sparse/window.py): accuracy against dense, cost up to 4,000+ atoms.

    .venv/bin/python benchmarks/analysis_large.py [--work out/analysis_large] \
        [--compare 12x10] [--sizes 14x12,20x17,28x24] [--kpm-sigma 0.1]

Records are predicted with the bundled model (examples/models/wse2_vacancies) for WSe2
slabs with Se vacancies (`mlh.gpaw.structures.wse2_with_vacancies`, orthogonal cells of 6
atoms, 1 % vacancy rate) and cached in --work. One electron is removed per 120 atoms
(6 valence electrons per atom), so E_F lies in the valence band and there are holes.

1. Accuracy (--compare, ~720 atoms): the sparse window route against dense
   diagonalisation: E_F (meV), hole concentration (W+Se, E_F to E_F + 0.2 eV, %), the PDOS
   near E_F from the window states, and the KPM PDOS (sigma 0.05 eV) against the dense
   Gaussian PDOS measured in units of its stated standard error.
2. Cost (--sizes): each size in a fresh child process, from reading the record to the
   hole concentration (sparse pencil and ordering, window spectrum, holes): wall time per
   stage and peak memory (ru_maxrss); then, separately, kpm_pdos at --kpm-sigma.
   The growth exponent is fitted between the smallest and the largest size.

The measured runs use single-threaded BLAS by default (--blas-threads): on a 2-core machine
that other jobs share, two BLAS threads wait on each other at every call (the shift-invert
solves make thousands of mid-sized calls) and the same run takes ~3x longer.

Prints a JSON summary and saves it to benchmarks/results/analysis_large.json. Units: s,
GiB, meV, eV.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mlh.grids import parse_grid

from _results import write_results

MODEL = Path(__file__).parents[1] / "examples" / "models" / "wse2_vacancies"
VALENCE = 6
ATOMS_PER_HOLE = 120
HOLE_WINDOW = (0.0, 0.2)
SPECTRUM_WINDOW = (-0.3, 0.45)  # the hole window plus 5 sigma on each side


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _charge(n_atoms: int) -> float:
    return float(round(n_atoms / ATOMS_PER_HOLE))


def _make_record(repeat: str, path: Path) -> dict:
    """Predict and write the record of a `repeat` (e.g. 28x24) slab."""
    from mlh.gpaw.structures import wse2_with_vacancies
    from mlh.inference.prediction import predict_record
    from mlh.model.predictor import Predictor
    from mlh.record.io import write_record

    nx, ny = parse_grid(repeat, "repeat", lengths=(2,))
    atoms = wse2_with_vacancies(np.random.default_rng(5), repeat=(nx, ny),
                                mean_vacancies=0.01 * nx * ny)
    start = time.perf_counter()
    record = predict_record(Predictor.load(MODEL), atoms, f"wse2 {repeat}")
    write_record(record, path)
    return {"atoms": len(atoms), "seconds": time.perf_counter() - start}


def _cost(path: Path, kpm_sigma: float) -> dict:
    """Record -> hole concentration, stage by stage, then kpm_pdos (in this process)."""
    from analysis.dos import energy_grid
    from analysis.hole import hole_concentration
    from analysis.sparse.kpm import kpm_pdos
    from analysis.sparse.shift_invert import sparse_pencil
    from analysis.sparse.window import window_spectrum
    from mlh.record.io import read_record

    times = {}
    start = time.perf_counter()
    record = read_record(path)
    times["read"] = time.perf_counter() - start
    mark = time.perf_counter()
    pencil = sparse_pencil(record)
    times["pencil_and_ordering"] = time.perf_counter() - mark
    mark = time.perf_counter()
    electrons = VALENCE * record.n_atoms
    spectrum = window_spectrum(record, n_electrons=electrons, charge=_charge(record.n_atoms),
                               window=SPECTRUM_WINDOW, pencil=pencil)
    times["window_spectrum"] = time.perf_counter() - mark
    mark = time.perf_counter()
    holes = hole_concentration(spectrum, window=HOLE_WINDOW)
    times["hole_concentration"] = time.perf_counter() - mark
    total = time.perf_counter() - start
    peak = _peak_gib()
    result = {
        "atoms": record.n_atoms,
        "orbitals": record.n_orbitals,
        "charge": _charge(record.n_atoms),
        "seconds_record_to_holes": total,
        "peak_memory_GiB_record_to_holes": peak,
        "stage_seconds": times,
        "factorizations": len(pencil.factorizations),
        "factorization_seconds": [round(t, 2) for t in pencil.factorizations],
        "factor_entries_millions": pencil.symbolic.factor_entries / 1e6,
        "window_states": len(spectrum.energies),
        "fermi_level_eV": spectrum.fermi_level,
        "holes_per_cell": float(holes.holes_per_cell),
        "holes_per_cm2": float(holes.holes_per_area),
    }
    mark = time.perf_counter()
    kpm = kpm_pdos(record, energy_grid(-8.0, 6.0, 2801), spectrum.fermi_level, sigma=kpm_sigma,
                   n_vectors=4, pencil=pencil)
    result["kpm"] = {
        "seconds": time.perf_counter() - mark,
        "peak_memory_GiB": _peak_gib(),
        "sigma_eV": kpm_sigma,
        "n_moments": kpm.attrs["n_moments"],
        "n_vectors": kpm.attrs["n_vectors"],
        "stochastic_error_relative": kpm.attrs["stochastic_error_relative"],
    }
    return result


def _accuracy(path: Path) -> dict:
    """Window route and KPM against dense diagonalisation (in this process)."""
    from analysis.dos import energy_grid, pdos_dataset
    from analysis.hole import hole_concentration
    from analysis.sparse.kpm import kpm_pdos
    from analysis.sparse.shift_invert import sparse_pencil
    from analysis.sparse.window import window_spectrum
    from analysis.spectrum import dense_spectrum
    from mlh.record.io import read_record

    record = read_record(path)
    electrons, charge = VALENCE * record.n_atoms, _charge(record.n_atoms)
    start = time.perf_counter()
    dense = dense_spectrum(record, n_electrons=electrons, charge=charge)
    dense_seconds = time.perf_counter() - start
    start = time.perf_counter()
    pencil = sparse_pencil(record)
    window = window_spectrum(record, n_electrons=electrons, charge=charge,
                             window=SPECTRUM_WINDOW, pencil=pencil)
    window_seconds = time.perf_counter() - start
    holes = {name: float(hole_concentration(s, window=HOLE_WINDOW).holes_per_cell)
             for name, s in (("dense", dense), ("window", window))}

    near = energy_grid(-0.05, 0.2, 251)  # inside the window's coverage shrunk by 5 sigma
    near_diff = float(np.abs(pdos_dataset(window, near).dos - pdos_dataset(dense, near).dos).max())
    grid = energy_grid(-8.0, 6.0, 2801)
    start = time.perf_counter()
    kpm = kpm_pdos(record, grid, window.fermi_level, sigma=0.05, n_vectors=16, pencil=pencil)
    kpm_seconds = time.perf_counter() - start
    exact = pdos_dataset(dense, grid, sigma=0.05)
    kpm_errors = {}
    for name in ("dos", "pdos_species", "pdos_species_l"):
        deviation = (kpm[name] - exact[name]).values
        error = np.hypot(kpm[f"{name}_stderr"].values, kpm.attrs["truncation_error"])
        kpm_errors[name] = {
            "rms_deviation_over_rms_stated_error": float(np.sqrt(np.mean(deviation**2) /
                                                                 np.mean(error**2))),
            "fraction_within_3_stated_errors": float(np.mean(np.abs(deviation) <= 3 * error)),
            "max_abs_deviation_states_per_eV": float(np.abs(deviation).max()),
            "max_dense_states_per_eV": float(exact[name].max()),
        }
    return {
        "atoms": record.n_atoms,
        "orbitals": record.n_orbitals,
        "charge": charge,
        "dense_seconds": dense_seconds,
        "window_seconds": window_seconds,
        "fermi_level_dense_eV": dense.fermi_level,
        "fermi_level_difference_meV": 1000 * (window.fermi_level - dense.fermi_level),
        "holes_per_cell": holes,
        "hole_relative_difference_percent":
            100 * (holes["window"] - holes["dense"]) / holes["dense"],
        "window_pdos_max_abs_difference_states_per_eV": near_diff,
        "kpm_seconds": kpm_seconds,
        "kpm_n_moments": kpm.attrs["n_moments"],
        "kpm_stochastic_error_relative": kpm.attrs["stochastic_error_relative"],
        "kpm_truncation_error_states_per_eV": kpm.attrs["truncation_error"],
        "kpm_vs_dense": kpm_errors,
    }


def _child(*args: str, blas_threads: str | None = None) -> dict:
    """Run this file in a child process (fresh memory) and return its JSON line."""
    env = dict(os.environ)
    if blas_threads is not None:
        env["OPENBLAS_NUM_THREADS"] = blas_threads
    run = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True,
                         text=True, env=env)
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("out/analysis_large"))
    parser.add_argument("--compare", default="12x10", help="slab for the dense comparison")
    parser.add_argument("--sizes", default="14x12,20x17,28x24", help="slabs for the cost scaling")
    parser.add_argument("--kpm-sigma", type=float, default=0.1)
    parser.add_argument("--blas-threads", default="1",
                        help="OPENBLAS_NUM_THREADS of the measured runs ('inherit' keeps the "
                             "environment's); two threads stall when other jobs share the cores")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/analysis_large.json"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stage, *rest = args.child
        result = {"make": lambda: _make_record(rest[0], Path(rest[1])),
                  "cost": lambda: _cost(Path(rest[0]), float(rest[1])),
                  "accuracy": lambda: _accuracy(Path(rest[0]))}[stage]()
        print(json.dumps(result))
        return

    args.work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for repeat in [args.compare, *args.sizes.split(",")]:
        paths[repeat] = args.work / f"wse2_{repeat}.nc"
        if not paths[repeat].exists():
            print(f"predicting the {repeat} record ...", file=sys.stderr)
            _child("--child", "make", repeat, str(paths[repeat]))

    threads = None if args.blas_threads == "inherit" else args.blas_threads
    print("accuracy against dense ...", file=sys.stderr)
    accuracy = _child("--child", "accuracy", str(paths[args.compare]), blas_threads=threads)
    costs = []
    for repeat in args.sizes.split(","):
        print(f"cost of {repeat} ...", file=sys.stderr)
        costs.append({"repeat": repeat, **_child("--child", "cost", str(paths[repeat]),
                                                 str(args.kpm_sigma), blas_threads=threads)})
    first, last = costs[0], costs[-1]
    growth = lambda key: float(np.log(last[key] / first[key])
                               / np.log(last["atoms"] / first["atoms"]))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"{platform.system()}",
        "blas_threads": threads or os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "load_average_at_end": os.getloadavg()[0],
        "accuracy": accuracy,
        "cost": costs,
        "time_growth_exponent_record_to_holes": growth("seconds_record_to_holes"),
        "targets": {"seconds": 300, "peak_memory_GiB": 8},
    }
    print(write_results(result, args.out))


if __name__ == "__main__":
    main()
