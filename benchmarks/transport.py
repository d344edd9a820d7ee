"""Transport (analysis/transport): cost up to >= 2,000 atoms, and predicted vs GPAW T(E) and I(V).

    .venv/bin/python benchmarks/transport.py [--work out/transport] [--lengths 40,80,160,334] \
        [--energies 400] [--scaling-energies 20] [--gpaw-record DIR/small.nc]

Devices: orthogonal WSe2 monolayers one cell wide (a = 3.32 Å along x, the transport axis;
5.75 Å along y, Γ only) and L cells long, Se vacancies at 2 % of the Se sites outside the
4 cells at each end, predicted with the bundled model (examples/models/wse2_vacancies) and
cached in --work; electrodes from the devices' own ends (`--electrode-cells L`). E_F is the
predicted pristine cell's (dense spectrum, 24x12x1 k-points).

1. Cost: `mlh-analyze transport` in a fresh child process per length, BLAS threads as
   --blas-threads (default 1: two BLAS threads on the shared 2 cores measured 2x slower): wall time and peak memory (ru_maxrss)
   at --scaling-energies energies for every length and at --energies (>= 400) for the
   longest (>= 2,000 atoms; target <= 5 min, <= 8 GB). Growth exponent of time per energy
   between the shortest and the longest device.
2. Accuracy (--gpaw-record, the GPAW record of `examples/transport_devices.py --only small`,
   made by `mlh generate`): the same device predicted; T(E) (81 energies, transverse grid 1x2x1) and
   I(V) of both, each at its own E_F; the mean |log10 T_pred - log10 T_ref| over the bias
   window and over the whole grid, and I_pred / I_ref (as seed 004 table 6); the figure of
   both T(E) in benchmarks/results/transport_small_MODEL.png (as seed 004 figure 6), for each
   of --models (default the bundled direct model).

Prints a JSON summary and saves it to benchmarks/results/transport.json (a part run alone,
--skip-cost or without --gpaw-record, keeps the other part's entry). Units: s, GiB, eV, A.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _results import write_results

REPOSITORY = Path(__file__).resolve().parents[1]
MODEL = REPOSITORY / "examples" / "models" / "wse2_vacancies"
sys.path.insert(0, str(REPOSITORY / "examples"))

CHILD = """
import resource, sys, time
from analysis.cli import app
start = time.perf_counter()
try:
    app(["transport", *sys.argv[1:]], standalone_mode=False)
finally:
    print("BENCH", time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
"""


def device(length: int, seed: int = 0):
    """WSe2, `length` x 1 orthogonal cells, 2 % Se vacancies away from the 4 end cells."""
    from transport_devices import pristine

    atoms = pristine(length, 1)
    cell_x = atoms.cell[0, 0] / length
    selenium = np.flatnonzero((atoms.numbers == 34) & (atoms.positions[:, 0] > 4.5 * cell_x)
                              & (atoms.positions[:, 0] < (length - 4.5) * cell_x))
    rng = np.random.default_rng(seed)
    del atoms[sorted(rng.choice(selenium, size=max(1, round(0.02 * len(selenium))), replace=False))]
    return atoms


def predicted(atoms, path: Path, predictor) -> Path:
    from mlh.inference.prediction import predict_record
    from mlh.record.io import write_record

    if not path.exists():
        write_record(predict_record(predictor, atoms, source=path.stem), path)
    return path


def fermi_level(predictor, work: Path) -> float:
    from transport_devices import pristine

    from analysis.spectrum import dense_spectrum
    from mlh.record.io import read_record
    from mlh.record.kpoints import monkhorst_pack

    record = read_record(predicted(pristine(1, 1), work / "pristine_cell.nc", predictor))
    kpoints, weights = monkhorst_pack((24, 12, 1))
    return dense_spectrum(record, kpoints=kpoints, kpoint_weights=weights).fermi_level


def run_transport(record: Path, output: Path, args: list[str], threads: int) -> dict:
    """Wall time and peak memory of one `mlh-analyze transport` child; kept beside `output`
    (OUTPUT.json), so a re-run skips finished measurements."""
    measured = output.with_suffix(".json")
    if measured.exists() and output.exists():
        return json.loads(measured.read_text())
    environment = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    command = [sys.executable, "-c", CHILD, str(record), "-o", str(output), *args]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPOSITORY)
    if done.returncode != 0:
        raise SystemExit(f"transport failed for {record}:\n{done.stdout}\n{done.stderr}")
    line = [row for row in done.stdout.splitlines() if row.startswith("BENCH")][-1].split()
    result = {"seconds": float(line[1]), "peak_gib": float(line[2])}
    write_results(result, measured)
    return result


def cost(work: Path, lengths: list[int], energies: int, scaling_energies: int, threads: int) -> dict:
    from mlh.model.predictor import Predictor
    from mlh.record.io import read_record

    predictor = Predictor.load(MODEL)
    zero = fermi_level(predictor, work)
    rows = []
    for length in sorted(lengths):
        path = predicted(device(length), work / f"device_{length}.nc", predictor)
        n_atoms = read_record(path).n_atoms
        for points in sorted({scaling_energies} | ({energies} if length == max(lengths) else set())):
            options = ["--electrode-cells", str(length), "--energies", "-1.6,1.6", "--points", str(points),
                       "--bias", "1.0", "--fermi-level", str(zero)]
            measured = run_transport(path, work / f"device_{length}_{points}.nc", options, threads)
            rows.append({"cells": length, "atoms": n_atoms, "energies": points, **measured,
                         "seconds_per_energy": measured["seconds"] / points})
            print(json.dumps(rows[-1]), flush=True)
    short = [r for r in rows if r["energies"] == scaling_energies]
    exponent = float(np.log(short[-1]["seconds_per_energy"] / short[0]["seconds_per_energy"])
                     / np.log(short[-1]["atoms"] / short[0]["atoms"]))
    return {"fermi_level_pristine_eV": zero, "runs": rows, "time_per_energy_growth_exponent": exponent}


def log_error(pred, ref, window: tuple[float, float] | None) -> float:
    energy = ref.energy.values
    keep = np.ones_like(energy, bool) if window is None else (energy >= window[0]) & (energy <= window[1])
    floor = 1e-30
    return float(np.mean(np.abs(np.log10(np.clip(pred.transmission.values[keep], floor, None))
                                - np.log10(np.clip(ref.transmission.values[keep], floor, None)))))


def accuracy(work: Path, gpaw_record: Path, threads: int, model: Path) -> dict:
    import xarray as xr
    from ase.io import read

    from analysis.transport.dataset import plot_transmission
    from mlh.model.predictor import Predictor
    from mlh.record.io import read_record

    reference = read_record(gpaw_record)
    atoms = read(str(gpaw_record.with_suffix(".extxyz"))) if gpaw_record.with_suffix(".extxyz").exists() else None
    if atoms is None:
        from ase import Atoms

        atoms = Atoms(reference.numbers, reference.positions, cell=reference.cell, pbc=reference.pbc)
    prediction = predicted(atoms, work / f"small_predicted_{model.name}.nc", Predictor.load(model))
    length = 16
    biases = [0.5, 1.0, 1.5]
    options = ["--electrode-cells", str(length), "--energies", "-1.6,1.6", "--points", "81",
               "--bias", ",".join(map(str, biases)), "--kpts", "1x2x1"]
    result = {}
    outputs = {"gpaw": work / "small_gpaw.nc", "predicted": work / f"small_predicted_{model.name}.transport.nc"}
    for name, path in (("gpaw", gpaw_record), ("predicted", prediction)):
        result[f"{name}_cost"] = run_transport(path, outputs[name], options, threads)
    with xr.open_dataset(outputs["gpaw"]) as ref, xr.open_dataset(outputs["predicted"]) as pred:
        plot_transmission(pred, REPOSITORY / "benchmarks" / "results" / f"transport_small_{model.name}.png",
                          title=f"WSe2, 16 x 1 cells, one Se vacancy: {model.name} vs GPAW H", reference=ref,
                          labels=("predicted H", "GPAW H"))
        result.update({
            "model": str(model.relative_to(REPOSITORY) if model.is_relative_to(REPOSITORY) else model),
            "atoms": reference.n_atoms,
            "fermi_level_gpaw_eV": ref.attrs["fermi_level"], "fermi_level_predicted_eV": pred.attrs["fermi_level"],
            "biases_V": biases,
            "current_gpaw_A": ref.current.values.tolist(), "current_predicted_A": pred.current.values.tolist(),
            "current_ratio_pred_over_ref": (pred.current.values / ref.current.values).tolist(),
            "log10_T_error_in_bias_window": {f"{v:g} V": log_error(pred, ref, (-v / 2, v / 2)) for v in biases},
            "log10_T_error_whole_grid": log_error(pred, ref, None),
        })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("out/transport"))
    parser.add_argument("--lengths", default="40,160,340")
    parser.add_argument("--energies", type=int, default=400)
    parser.add_argument("--scaling-energies", type=int, default=20)
    parser.add_argument("--blas-threads", type=int, default=1)
    parser.add_argument("--gpaw-record", type=Path)
    parser.add_argument("--models", default=str(MODEL),
                        help="comma-separated model folders compared with GPAW (accuracy part)")
    parser.add_argument("--skip-cost", action="store_true")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = REPOSITORY / "benchmarks" / "results" / "transport.json"
    summary = json.loads(results.read_text()) if results.exists() else {}   # parts run separately
    summary.update({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "blas_threads": args.blas_threads})
    if not args.skip_cost:
        summary["cost"] = cost(args.work, [int(n) for n in args.lengths.split(",")], args.energies,
                               args.scaling_energies, args.blas_threads)
    if args.gpaw_record is not None:
        summary["accuracy"] = {Path(m).name: accuracy(args.work, args.gpaw_record, args.blas_threads,
                                                      Path(m).absolute())
                               for m in args.models.split(",")}
    summary["total_seconds"] = time.perf_counter() - start
    print(write_results(summary, results))


if __name__ == "__main__":
    main()
