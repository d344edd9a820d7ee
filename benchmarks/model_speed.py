"""Training-step time of the GEARS H model at internal degree 2 and 4, e3x Tensor vs FusedTensor
(issue 16, part 4), on GPAW records (default the WSe2-with-vacancies set).

    .venv/bin/python benchmarks/model_speed.py --data example_data/wse2_3x2_h0 \
        --config examples/wse2_model.yaml --records 4 --epochs 4

For each variant the configuration's model is changed only in its internal degrees
(`radial_basis.max_degree`, `max_tensordense_degree`, `bond_centered.max_degree`,
`expansion_max_degree`: 2 or 4; the readouts reach the degree-4 irreps of d-d blocks either
way) and `use_fused_tensor` (atom- and bond-centred). Each trains `--epochs` epochs on the
first `--records` training records (batch size, padding and bond fraction of the
configuration) in a fresh folder; the first epoch holds the compilation. Reported: parameters,
seconds per training step (median over epochs 2..), first-epoch seconds (compilation
included), XLA's step memory, and the validation H MAE after the short run (meV; a rough
sign of accuracy per step, not a converged comparison). Results go to
benchmarks/results/model_speed.json (resumable: finished variants are kept). Units: s, MiB, meV.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

from mlh.model.config import TrainConfig, load_config
from mlh.train.loop import split_files, train

from _results import training_history, write_results

VARIANTS = {f"degree{d}_{'fused' if fused else 'tensor'}": (d, fused) for d in (2, 4) for fused in (False, True)}


def _variant(base: TrainConfig, degree: int, fused: bool, folder: Path, records: int, epochs: int) -> TrainConfig:
    atom, bond = base.model.atom_centered, base.model.bond_centered
    atom = atom.model_copy(update={
        "radial_basis": atom.radial_basis.model_copy(update={"max_degree": degree}),
        "max_tensordense_degree": degree, "use_fused_tensor": fused,
    })
    bond = bond.model_copy(update={"max_degree": degree, "expansion_max_degree": degree,
                                   "use_fused_tensor": fused})
    return base.model_copy(update={
        "output": folder, "n_epochs": epochs, "valid_every": epochs, "checkpoint_every": epochs,
        "data": base.data.model_copy(update={"n_train": records, "n_valid": 1}),
        "model": base.model.model_copy(update={"atom_centered": atom, "bond_centered": bond}),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=Path("examples/wse2_model.yaml"))
    parser.add_argument("--records", type=int, default=4, help="training records (steps per epoch)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--runs", type=Path, default=Path("example_output/model_speed"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/model_speed.json"))
    args = parser.parse_args()

    base = load_config(args.config)
    base = base.model_copy(update={"data": base.data.model_copy(update={"train_path": [args.data],
                                                                          "valid_path": []})})
    settings = {"data": str(args.data), "config": str(args.config), "records": args.records,
                "epochs": args.epochs}
    result = {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}, "
                         "2 cores shared with other jobs", "settings": settings, "variants": {}}
    if args.out.exists():
        old = json.loads(args.out.read_text())
        if old.get("settings") == settings:
            result["variants"] = old["variants"]
    steps_per_epoch = -(-min(args.records, len(split_files(base.data)[0])) // base.data.batch_size)
    for name in args.variants.split(","):
        if name in result["variants"]:
            print(f"{name}: done")
            continue
        degree, fused = VARIANTS[name]
        config = _variant(base, degree, fused, args.runs / name, args.records, args.epochs)
        predictor = train(config, progress=False, log=lambda line, name=name: print(name, line, flush=True))
        history = training_history(config.output)
        seconds = [float(row["epoch_seconds"]) for row in history]
        last = history[-1]
        result["variants"][name] = {
            "degree": degree, "fused_tensor": fused, "parameters": predictor.n_parameters,
            "steps_per_epoch": steps_per_epoch,
            "seconds_per_step": statistics.median(seconds[1:]) / steps_per_epoch,
            "first_epoch_seconds": seconds[0],
            "step_memory_mib": float(last["step_memory_mib"]),
            "valid_mae_meV_after_short_run": _valid_mae(last),
        }
        print(name, result["variants"][name], flush=True)
        write_results(result, args.out)


def _valid_mae(row: dict[str, str]) -> dict[str, float]:
    """Validation on-site and off-site MAE (meV) of a metrics.csv row."""
    return {"onsite": float(row["mae_onsite_meV"]), "offsite": float(row["mae_offsite_meV"])}


if __name__ == "__main__":
    main()
