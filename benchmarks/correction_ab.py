"""A/B benchmark of issue 16: a direct model (learns H) against a correction model (learns
dH = H - H0, H0 the zeroth-step Hamiltonian) on the same GPAW records.

    .venv/bin/mlh recipe wse2 -n 20 --seed 11 -o example_data/wse2_3x2.extxyz
    .venv/bin/mlh generate example_data/wse2_3x2.extxyz -o example_data/wse2_3x2_h0 \
        --config examples/wse2_gpaw.yaml --baseline
    .venv/bin/python benchmarks/correction_ab.py --data example_data/wse2_3x2_h0 \
        --config examples/wse2_model.yaml --epochs 100 --wall 900 --sizes 4,8,16

Every run uses the configuration's architecture, optimizer and validation split
(`data.valid_fraction`, `split_seed`), the same number of epochs and the same training-time
budget (`--wall`, seconds of training epochs); they differ only in the target
(`model.target`), optionally the gauge-invariant loss (arms `*_gauge`), and the number of
training records (`data.n_train`: the first N of the training split, so sizes are nested).
For each run the best model (lowest validation loss) is evaluated on the validation records:
H MAE all / on-site / off-site / per species pair, eigenvalue MAE within E_F +- 5 eV at
Γ, raw and after the best constant shift c·S per structure. The first entry, `baseline_H0`,
is H0 itself against H: what no learning gives.

A configuration with `data.extra_train_path` (records that are never validated on, such as
relaxation snapshots) adds those folders to every run's training records. With
`--extra-counts 0,1,2` each run keeps only the first k of them, so the learning curve can run
past the records of `--data` (the runs are then named <arm>_n<size>_x<k>).

Runs train in RUNS/<data name>_<records>/<arm>_n<size>[_x<k>]_e<epochs> and resume after a kill; finished runs (in the results
JSON with the same data, configuration, epochs and budget) are not redone; a results file
made with other settings is refused, never overwritten (the configuration counts as loaded:
comments do not change it). Results are
written after every run to benchmarks/results/correction_ab_<data name>.json. Units: meV, s.
"""

from __future__ import annotations

import argparse
import platform
import time
from itertools import product
from pathlib import Path

from mlh.inference.evaluation import evaluate_pairs
from mlh.inference.metrics import gauge_aligned, gauge_shift
from mlh.inference.prediction import predict_record
from mlh.model.config import TrainConfig, load_config
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import read_record
from mlh.train.loop import split_files, train

from _results import config_digest, load_previous, training_history, write_results

ARMS = {
    "direct": ("hamiltonian", False),
    "correction": ("correction", False),
    "direct_gauge": ("hamiltonian", True),
    "correction_gauge": ("correction", True),
}
"""Arm name: (model.target, loss.gauge_invariant)."""


def _summary(metrics) -> dict:
    """Headline numbers (meV) of an `evaluate_pairs` Dataset."""
    return {
        "H_mae": 1000 * float(metrics["mae_all"]),
        "onsite_mae": 1000 * float(metrics["mae_onsite"]),
        "offsite_mae": 1000 * float(metrics["mae_offsite"]),
        "species_pair_mae": {str(k): 1000 * float(v) for k, v in
                             zip(metrics.species_pair.values, metrics["mae_species_pair"].values)},
        "eigenvalue_mae_window": 1000 * float(metrics["eigenvalue_mae_window"]),
    }


def evaluation(pairs: list[tuple[str, HamiltonianRecord, HamiltonianRecord]], window: float) -> dict:
    """Raw and c·S-aligned errors (meV) of (name, predicted, reference) records, and the
    per-structure shifts c (meV)."""
    shifts = [gauge_shift(predicted, reference) for _, predicted, reference in pairs]
    aligned = [(name, gauge_aligned(predicted, c), reference)
               for (name, predicted, reference), c in zip(pairs, shifts)]
    return {
        "raw": _summary(evaluate_pairs(pairs, window)),
        "aligned": _summary(evaluate_pairs(aligned, window)),
        "gauge_shift": [1000 * c for c in shifts],
    }


def evaluate_model(predictor, references: dict[str, HamiltonianRecord], window: float) -> dict:
    """`evaluation` of a model's predictions for the records (name -> GPAW record)."""
    return evaluation([(n, predict_record(predictor, r, n), r) for n, r in references.items()], window)


def run_name(arm: str, size: int, extra_count: int | None) -> str:
    """Key of a run in the results: arm, records of --data, and the extra folders it kept."""
    return f"{arm}_n{size}" + ("" if extra_count is None else f"_x{extra_count}")


def _run_config(base: TrainConfig, data: Path, runs: Path, arm: str, size: int, epochs: int,
                extra_count: int | None) -> TrainConfig:
    target, gauge = ARMS[arm]
    extra = base.data.extra_train_path if extra_count is None else base.data.extra_train_path[:extra_count]
    return base.model_copy(update={
        "output": runs / f"{run_name(arm, size, extra_count)}_e{epochs}",
        "n_epochs": epochs,
        "data": base.data.model_copy(update={"train_path": [data], "valid_path": [], "n_train": size,
                                             "extra_train_path": extra}),
        "model": base.model.model_copy(update={"target": target}),
        "loss": base.loss.model_copy(update={"gauge_invariant": gauge}),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of records with H0")
    parser.add_argument("--config", type=Path, default=Path("examples/wse2_model.yaml"))
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--wall", type=float, default=900.0, help="training seconds per run")
    parser.add_argument("--sizes", default="0", help="training records per run, e.g. 4,8,16; 0: all")
    parser.add_argument("--arms", default="direct,correction", help=f"of {', '.join(ARMS)}")
    parser.add_argument("--extra-counts", default=None,
                        help="runs keep the first k of the configuration's extra_train_path "
                        "folders, e.g. 0,1,2; default all of them, runs named without _x<k>")
    parser.add_argument("--valid-fraction", type=float, default=None,
                        help="validation share of the records; default the configuration's")
    parser.add_argument("--window", type=float, default=5.0, help="eigenvalues within E_F +- this, eV")
    parser.add_argument("--runs", type=Path, default=Path("example_output/correction_ab"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    base = load_config(args.config)
    valid_fraction = base.data.valid_fraction if args.valid_fraction is None else args.valid_fraction
    base = base.model_copy(update={"data": base.data.model_copy(update={
        "train_path": [args.data], "valid_path": [], "valid_fraction": valid_fraction})})
    train_files, valid_files = split_files(base.data)
    out = args.out or Path(f"benchmarks/results/correction_ab_{args.data.name}.json")
    n_records = len(train_files) + len(valid_files)
    runs = args.runs / f"{args.data.name}_{n_records}"
    settings = {
        "data": str(args.data), "config": str(args.config),
        "config_digest": config_digest(base),
        "epochs": args.epochs, "wall_seconds": args.wall, "window_eV": args.window,
        "valid_fraction": valid_fraction, "records": n_records,
    }
    previous = load_previous(out, settings)
    references = {p.stem: read_record(p) for p in valid_files}
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, 2 shared cores",
        "settings": settings,
        "train_records": [p.stem for p in train_files],
        "valid_records": list(references),
        "baseline_H0": evaluation([(n, r.baseline_as_hamiltonian(), r) for n, r in references.items()], args.window),
        "runs": previous,
    }
    write_results(result, out)
    n_own = len(split_files(base.data.model_copy(update={"extra_train_path": []}))[0])
    sizes = [int(s) or n_own for s in args.sizes.split(",")]
    extra_counts = [None] if args.extra_counts is None else [int(k) for k in args.extra_counts.split(",")]
    for size, extra_count, arm in product(sizes, extra_counts, args.arms.split(",")):
        key = run_name(arm, size, extra_count)
        if key in previous:
            print(f"{key}: done")
            continue
        config = _run_config(base, args.data, runs, arm, size, args.epochs, extra_count)
        start = time.perf_counter()
        predictor = train(config, progress=False, log=lambda line, key=key: print(key, line, flush=True),
                          time_limit=args.wall)
        history = training_history(config.output)
        result["runs"][key] = {
            "arm": arm, "target": ARMS[arm][0], "gauge_invariant_loss": ARMS[arm][1],
            "train_structures": predictor.metadata.get("n_train"),
            "parameters": predictor.n_parameters,
            "epochs_done": len(history),
            "best_epoch": predictor.metadata.get("best", {}).get("epoch"),
            "train_seconds": sum(float(row["epoch_seconds"]) for row in history),
            "this_call_seconds": time.perf_counter() - start,
            "valid": evaluate_model(predictor, references, args.window),
        }
        write_results(result, out)
        valid = result["runs"][key]["valid"]
        print(f"{key}: H MAE {valid['raw']['H_mae']:.3f} meV (aligned {valid['aligned']['H_mae']:.3f}), "
              f"eigenvalues {valid['raw']['eigenvalue_mae_window']:.2f} meV", flush=True)


if __name__ == "__main__":
    main()
