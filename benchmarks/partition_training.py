"""Training on one large structure: the whole record vs augmented slices (seed 004, section 3.3).

The same model is trained on one GPAW record, once on the whole record and once per
slice thickness (`data.partition`), each run in a fresh process so that its peak memory
is its own, and each model is tested on other structures of the same material. Printed
and saved (JSON) per run: H matrix-element MAE on the test structure (meV: all, on-site,
off-site), seconds per epoch (median over the epochs after the first, which compiles),
steps per epoch, atoms per step, peak host memory (max RSS, MiB; on CPU dominated by XLA's
compiler), the largest training step's XLA memory (arguments + outputs + temporaries, MiB:
what a step needs on the device, reported by the compiler on any backend) and, on a GPU,
peak device memory (MiB). Lengths in Å.

Data (GPAW records, kept out of the repository), e.g. two WSe2 sheets with ghost Se
vacancies, the first for training, the second for testing:

    mlh recipe wse2 -n 2 --repeat 6x6 --ghosts --vacancy-rate 0.02:0.04 --seed 8 \\
        -o data/partition/wse2_6x6.extxyz
    mlh generate data/partition/wse2_6x6.extxyz -o data/partition/wse2_6x6 \\
        --config examples/wse2_gpaw.yaml -j 1

Run (the longest cell axis is y, axis 1):

    python benchmarks/partition_training.py data/partition/wse2_6x6/wse2_6x6-0000.nc \\
        data/partition/wse2_6x6/wse2_6x6-0001.nc --axis 1 --thickness 4 8 16 --epochs 20

The small case of docs/partition.md uses 4x3 sheets (`--repeat 4x3 --seed 8
--vacancy-rate 0.03:0.06`, 72 atoms, 5 min of GPAW each on 2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from _results import training_history, write_results

ROOT = Path(__file__).resolve().parents[1]


def train_run(config: dict) -> dict:
    """Train as configured (JSON-able TrainConfig) in this process; wall time and peak memory."""
    import resource

    import jax

    from mlh.model.config import TrainConfig
    from mlh.train.loop import train

    start = time.perf_counter()
    train(TrainConfig.model_validate(config), progress=False, log=lambda _: None)
    result = {
        "wall_seconds": round(time.perf_counter() - start, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "device": jax.devices()[0].platform,
    }
    memory = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in memory:
        result["peak_device_mib"] = round(memory["peak_bytes_in_use"] / 2**20, 1)
    return result


def _test_errors(model: Path, tests: list[Path]) -> dict:
    """H MAE (meV) of a trained model on the test records (mean over records)."""
    from mlh.inference.metrics import matrix_element_errors
    from mlh.inference.prediction import predict_record
    from mlh.model.predictor import Predictor
    from mlh.record.io import read_record

    predictor = Predictor.load(model)
    errors = []
    for test in tests:
        reference = read_record(test)
        errors.append(matrix_element_errors(predict_record(predictor, reference, str(test)), reference))
    return {f"{key}_meV": round(1000 * sum(float(e[key]) for e in errors) / len(errors), 3)
            for key in ("mae_all", "mae_onsite", "mae_offsite")}


def _slices(train: Path, partition, model, folder: Path) -> dict:
    """Write (or reuse) the slices of the training record; their count and sizes."""
    from mlh.train.partition_io import partition_files, read_partition

    start = time.perf_counter()
    files = partition_files(train, partition, model, folder, log=print)
    seconds = time.perf_counter() - start
    slices = [read_partition(f) for f in files]
    return {
        "slices": len(slices),
        "slice_thickness_angstrom": round(slices[0].thickness, 3),
        "labelled_atoms_per_slice": [min(s.n_labelled for s in slices), max(s.n_labelled for s in slices)],
        "atoms_per_slice": [min(s.n_atoms for s in slices), max(s.n_atoms for s in slices)],
        "partition_seconds": round(seconds, 2),
    }


def run(args: argparse.Namespace) -> dict:
    """All runs; returns the JSON-able results."""
    from mlh.model.config import PartitionConfig, load_config
    from mlh.record.io import read_record

    base = load_config(args.config)
    n_train = read_record(args.train).n_atoms
    n_test = [read_record(test).n_atoms for test in args.test]
    workdir = Path(args.workdir)
    runs = []
    for thickness in [None, *args.thickness]:
        name = "full" if thickness is None else f"slices_{thickness:g}A"
        partition = None
        info = {"slices": 1, "atoms_per_slice": [n_train, n_train]}
        if thickness is not None:
            partition = PartitionConfig(axis=args.axis, thickness=thickness, folder=workdir / "partitions")
            info = _slices(args.train, partition, base.model, partition.folder)
        data = base.data.model_copy(update={
            "train_path": [args.train], "valid_path": [], "valid_fraction": 0.0, "n_train": None,
            "batch_size": args.batch_size, "partition": partition,
        })
        epochs = args.epochs if thickness is not None else (args.full_epochs or args.epochs)
        config = base.model_copy(update={"output": workdir / name, "n_epochs": epochs, "data": data})
        shutil.rmtree(workdir / name, ignore_errors=True)  # a fresh run, not a resumed one
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            measured = pool.submit(train_run, config.model_dump(mode="json")).result()
        history = training_history(workdir / name)
        seconds = [float(row["epoch_seconds"]) for row in history]
        row = {
            "name": name,
            "thickness_angstrom": thickness,
            "epochs": epochs,
            **info,
            "steps_per_epoch": -(-info["slices"] // args.batch_size),
            "compilations": int(history[-1]["compilations"]),
            "step_memory_mib": float(history[-1]["step_memory_mib"]),
            "first_epoch_seconds": seconds[0],
            "epoch_seconds": statistics.median(seconds[1:] or seconds),
            **measured,
            "final_train_loss": float(history[-1]["train_loss"]),
            **_test_errors(workdir / name / "model", args.test),
        }
        print(json.dumps(row))
        runs.append(row)
    return {
        "train_record": str(args.train),
        "test_records": [str(test) for test in args.test],
        "train_atoms": n_train,
        "test_atoms": n_test,
        "config": str(args.config),
        "axis": args.axis,
        "epochs": args.epochs,
        "slices_per_step": args.batch_size,
        "runs": runs,
    }


def _table(results: dict) -> str:
    head = f"{'run':<14}{'slices':>7}{'max atoms/step':>15}{'s/epoch':>9}{'RSS MiB':>9}{'step MiB':>9}" \
           f"{'MAE meV':>9}{'on-site':>9}{'off-site':>9}"
    lines = [head]
    for r in results["runs"]:
        lines.append(
            f"{r['name']:<14}{r['slices']:>7}{r['atoms_per_slice'][1] * results['slices_per_step']:>15}"
            f"{r['epoch_seconds']:>9.2f}{r['peak_rss_mib']:>9.0f}{r['step_memory_mib']:>9.0f}"
            f"{r['mae_all_meV']:>9.2f}{r['mae_onsite_meV']:>9.2f}{r['mae_offsite_meV']:>9.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", type=Path, help="GPAW record (NetCDF) to train on")
    parser.add_argument("test", type=Path, nargs="+",
                        help="GPAW records of other structures of the same material (MAE: mean over them)")
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "wse2_model.yaml",
                        help="training YAML (model, optimizer, padding; data paths are replaced)")
    parser.add_argument("--thickness", type=float, nargs="*", default=[4.0, 8.0],
                        help="slice thicknesses, Å (none: the whole-record run only)")
    parser.add_argument("--axis", type=int, default=0, help="cell axis cut into slices")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--full-epochs", type=int, help="epochs of the whole-record run (default "
                        "--epochs; e.g. as many optimizer steps as a sliced run makes)")
    parser.add_argument("--batch-size", type=int, default=1, help="slices per step and device")
    parser.add_argument("--workdir", type=Path, default=Path("out/partition_runs"),
                        help="run folders (replaced) and slices (reused)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "partition_training.json")
    args = parser.parse_args()
    results = run(args)
    write_results(results, args.output)
    print(_table(results))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
