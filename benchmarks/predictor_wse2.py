"""Predictor benchmark on the WSe2-with-Se-vacancies example: accuracy, training and inference cost.

    bash examples/make_wse2_dataset.sh            # the GPAW dataset (once, ~30 min)
    .venv/bin/python benchmarks/predictor_wse2.py --config examples/wse2_model.yaml \
        --large-repeat 32x28

Trains as configured (resuming a finished or killed run), evaluates the best model on the
validation split (H MAE all / on-site / off-site / per species pair, eigenvalue MAE within
E_F +- 5 eV at Γ, spectrum relative L1), times inference of one training-sized structure
and of a large WSe2 slab (default 32x28 orthogonal cells, ~5,300 atoms) in a child process
that reports its peak memory. Prints a JSON summary and saves it to
benchmarks/results/predictor_wse2.json. Units: meV, s, GiB.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mlh.grids import parse_grid
from mlh.inference.evaluation import evaluate_pairs
from mlh.inference.prediction import predict_record
from mlh.model.config import load_config
from mlh.model.predictor import Predictor
from mlh.record.io import read_record
from mlh.train.loop import split_files, train

from _results import write_results

_LARGE = """
import json, resource, sys, time
import numpy as np
from mlh.inference.prediction import predict_record
from mlh.model.predictor import Predictor
from mlh.gpaw.structures import wse2_with_vacancies
model, nx, ny = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
atoms = wse2_with_vacancies(np.random.default_rng(5), repeat=(nx, ny), mean_vacancies=0.01 * nx * ny)
predictor = Predictor.load(model)
start = time.perf_counter()
record = predict_record(predictor, atoms, "large slab")
seconds = time.perf_counter() - start
print(json.dumps({"atoms": len(atoms), "orbitals": int(record.n_orbitals), "pairs": int(record.n_pairs),
                  "seconds": seconds,
                  "peak_memory_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def _inference_one(predictor: Predictor, path: Path) -> dict:
    """Cold (with compilation) and warm inference time of one record's structure, S from GPAW tables."""
    from ase import Atoms

    reference = read_record(path)
    atoms = Atoms(reference.numbers, reference.positions, cell=reference.cell, pbc=reference.pbc)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        predict_record(predictor, atoms, str(path))
        times.append(time.perf_counter() - start)
    return {"atoms": len(atoms), "cold_seconds": times[0], "warm_seconds": times[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("examples/wse2_model.yaml"))
    parser.add_argument("--large-repeat", default="32x28", help="orthogonal WSe2 cells, e.g. 32x28")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/predictor_wse2.json"))
    args = parser.parse_args()

    config = load_config(args.config)
    start = time.perf_counter()
    predictor = train(config, progress=False)
    train_seconds = time.perf_counter() - start
    lines = (config.output / "metrics.csv").read_text().splitlines()
    keys = lines[0].split(",")
    history = [dict(zip(keys, line.split(","))) for line in lines[1:]]
    epoch_seconds = [float(row["epoch_seconds"]) for row in history[1:]] or [float(history[0]["epoch_seconds"])]

    _, valid_files = split_files(config.data)
    pairs = [(p.stem, predict_record(predictor, read_record(p), str(p)), read_record(p)) for p in valid_files]
    metrics = evaluate_pairs(pairs, window=5.0)

    nx, ny = parse_grid(args.large_repeat, "--large-repeat", lengths=(2,))
    large = subprocess.run(
        [sys.executable, "-c", _LARGE, str(config.output / "model"), str(nx), str(ny)],
        check=True, capture_output=True, text=True,
    )
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "config": str(args.config),
        "parameters": predictor.n_parameters,
        "epochs": len(history),
        "best_epoch": predictor.metadata.get("best", {}).get("epoch"),
        "train_structures": predictor.metadata.get("n_train"),
        "valid_structures": len(valid_files),
        "seconds_per_epoch_median": float(np.median(epoch_seconds)),
        "this_run_train_seconds": train_seconds,
        "valid_H_mae_meV": 1000 * float(metrics["mae_all"]),
        "valid_onsite_mae_meV": 1000 * float(metrics["mae_onsite"]),
        "valid_offsite_mae_meV": 1000 * float(metrics["mae_offsite"]),
        "valid_species_pair_mae_meV": {
            str(k): 1000 * float(v) for k, v in zip(metrics.species_pair.values, metrics["mae_species_pair"].values)
        },
        "valid_eigenvalue_mae_window_meV": 1000 * float(metrics["eigenvalue_mae_window"]),
        "valid_spectrum_relative_l1": float(metrics["spectrum_relative_l1"].mean()),
        "inference_one_structure": _inference_one(predictor, valid_files[0]),
        "inference_large_structure": json.loads(large.stdout.strip().splitlines()[-1]),
    }
    print(write_results(result, args.out))


if __name__ == "__main__":
    main()
