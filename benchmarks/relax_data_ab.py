"""Which training data helps relaxations (issue 17, item 3): the same model trained on a base
set alone and with each part of the relaxation recipe added.

    bash examples/make_sio2_relax_dataset.sh example_data 2 30     # GPAW relaxations + rattles
    .venv/bin/python benchmarks/relax_data_ab.py --base example_data/sio2_train_h0 \
        --extra example_data/sio2_relax --part snapshots='snapshots_*' --part rattled='rattled_*' \
        --path out/physics_sio2_issue17/relax_2x2x2_host_gpaw.traj@3,9,-1 \
        --path out/physics_sio2_issue17/relax_2x2x2_defect_gpaw.traj@3,9,-1 --epochs 40

Arms: "base" (the base folder's training split), "base+<part>" for every --part (the records
of the extra folder whose names match the part's glob), and "base+all" (every part). Every
arm has the configuration's architecture and optimizer, the same epochs and the same
validation records (the base folder's validation split, which picks the best epoch). Each
arm's best model is evaluated
- on the base validation records: H MAE all / on-site / off-site / per species pair and
  eigenvalue MAE within E_F +- 5 eV, raw and after the best c·S per structure
  (`correction_ab.evaluate_model`);
- on frames of GPAW relaxation trajectories (--path FILE@INDICES; for example
  benchmarks/physics_sio2.py's 72/71-atom relaxations, larger cells than any training
  cell), with the dft route (GPAW settings --gpaw-config): energy error (meV/atom) and
  force MAE (meV/Å) against the energies and forces GPAW stored in the trajectory.

--arms picks arms to train; --model NAME=FOLDER evaluates trained models the same way (for
example the bundled model, trained on base+all for other epochs; with --model and no --arms
no arm is trained). Runs train in
RUNS/<arm>_e<epochs> and resume after a kill; finished arms (in the results
JSON with the same settings) are not redone; a results file made with other settings is
refused, never overwritten (the configuration counts as loaded: comments do not change it).
Results: benchmarks/results/relax_data_ab.json.
Units: meV, meV/atom, meV/Å, s.
"""

from __future__ import annotations

import argparse
import fnmatch
import platform
import time
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

from mlh.gpaw.settings import load_settings
from mlh.model.config import load_config
from mlh.model.predictor import Predictor
from mlh.record.io import read_record, record_files
from mlh.train.loop import split_files, train
from relax.calculator import MLHCalculator

from _results import config_digest, load_previous, training_history, write_results
from correction_ab import evaluate_model


def _parts(extra: Path | None, specs: list[str]) -> dict[str, list[Path]]:
    """Part name -> record files of `extra` whose names match the part's glob."""
    if not specs:
        return {}
    files = record_files([extra])
    parts = {}
    for spec in specs:
        name, _, pattern = spec.partition("=")
        parts[name] = [f for f in files if fnmatch.fnmatch(f.stem, pattern)]
        if not parts[name]:
            raise SystemExit(f"--part {spec}: no records of {extra} match {pattern!r}")
    return parts


def _path_frames(specs: list[str]) -> dict[str, Atoms]:
    """Frames of trajectories ("FILE@i,j,..."; negative indices from the end) with GPAW's
    energies and forces, named FILE-STEM@i."""
    frames = {}
    for spec in specs:
        file, _, indices = spec.partition("@")
        images = read(file, ":")
        for index in (int(i) for i in indices.split(",")) if indices else range(len(images)):
            frames[f"{Path(file).stem}@{index % len(images)}"] = images[index]
    return frames


def _path_errors(predictor: Predictor, frames: dict[str, Atoms], gpaw_config: Path) -> dict:
    """dft-route energy error (meV/atom) and force MAE (meV/Å) per frame against GPAW."""
    calculator = MLHCalculator.from_gpaw_settings(predictor, load_settings(gpaw_config))
    errors = {}
    for name, frame in frames.items():
        atoms = frame.copy()
        atoms.calc = calculator
        start = time.perf_counter()
        forces = atoms.get_forces()
        energy = atoms.get_potential_energy()
        errors[name] = {
            "energy_error_meV_per_atom": 1e3 * (energy - frame.get_potential_energy()) / len(atoms),
            "force_mae_meV_per_angstrom": 1e3 * float(np.abs(forces - frame.get_forces()).mean()),
            "seconds": time.perf_counter() - start,
        }
    return {"frames": errors, **{f"mean_{key}": float(np.mean([e[key] for e in errors.values()]))
                                 for key in ("energy_error_meV_per_atom", "force_mae_meV_per_angstrom")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="folder of base records with H0")
    parser.add_argument("--extra", type=Path, default=None, help="folder of the added records")
    parser.add_argument("--part", action="append", default=[], help="NAME=GLOB of record names in --extra")
    parser.add_argument("--path", action="append", default=[],
                        help="FILE@i,j,...: frames of a GPAW relaxation trajectory (with energies and forces)")
    parser.add_argument("--gpaw-config", type=Path, default=Path("examples/sio2_gpaw.yaml"))
    parser.add_argument("--config", type=Path, default=Path("examples/sio2_correction_model.yaml"))
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--window", type=float, default=5.0, help="eigenvalues within E_F +- this, eV")
    parser.add_argument("--runs", type=Path, default=Path("example_output/relax_data_ab"))
    parser.add_argument("--arms", default=None,
                        help="comma-separated arms to train (default: all, none with --model)")
    parser.add_argument("--model", action="append", default=[],
                        help="NAME=FOLDER: also evaluate a trained model (no training)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/relax_data_ab.json"))
    args = parser.parse_args()

    base = load_config(args.config)
    base = base.model_copy(update={"data": base.data.model_copy(update={
        "train_path": [args.base], "valid_path": [], "extra_train_path": []})})
    train_files, valid_files = split_files(base.data)
    parts = _parts(args.extra, args.part)
    arms = {"base": train_files}
    arms.update({f"base+{name}": train_files + files for name, files in parts.items()})
    if len(parts) > 1:
        arms["base+all"] = train_files + [f for files in parts.values() for f in files]
    references = {p.stem: read_record(p) for p in valid_files}
    frames = _path_frames(args.path)
    settings = {
        "base": str(args.base), "extra": str(args.extra), "parts": args.part, "paths": args.path,
        "gpaw_config": str(args.gpaw_config),
        "config": str(args.config), "config_digest": config_digest(base),
        "epochs": args.epochs, "window_eV": args.window,
    }
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, 2 shared cores",
        "settings": settings,
        "records": {"base_train": [p.stem for p in train_files], "valid": list(references), "path_frames": list(frames),
                    **{name: [p.stem for p in files] for name, files in parts.items()}},
        "runs": load_previous(args.out, settings),
    }
    write_results(result, args.out)

    def evaluate(name: str, predictor: Predictor, entry: dict) -> None:
        """Validation and relaxation-path errors of one model, stored under `name` and printed."""
        entry["valid"] = evaluate_model(predictor, references, args.window)
        line = (f"H MAE {entry['valid']['raw']['H_mae']:.3f} meV (on-site {entry['valid']['raw']['onsite_mae']:.1f}), "
                f"eigenvalues {entry['valid']['aligned']['eigenvalue_mae_window']:.1f} meV aligned")
        if frames:
            path = entry["relaxation_path"] = _path_errors(predictor, frames, args.gpaw_config)
            line += (f"; relaxation path: {path['mean_energy_error_meV_per_atom']:+.2f} meV/atom, "
                     f"forces {path['mean_force_mae_meV_per_angstrom']:.0f} meV/Å")
        result["runs"][name] = entry
        write_results(result, args.out)
        print(f"{name}: {line}", flush=True)

    if args.arms is not None:
        chosen = [arm for arm in args.arms.split(",") if arm]
    else:
        chosen = [] if args.model else list(arms)
    unknown = sorted(set(chosen) - set(arms))
    if unknown:
        parser.error(f"--arms: unknown arm(s) {unknown}; choose from {sorted(arms)}")
    for arm in chosen:
        if arm in result["runs"]:
            print(f"{arm}: done")
            continue
        config = base.model_copy(update={
            "output": args.runs / f"{arm}_e{args.epochs}", "n_epochs": args.epochs,
            "data": base.data.model_copy(update={"train_path": arms[arm], "valid_path": valid_files}),
        })
        start = time.perf_counter()
        predictor = train(config, progress=False, log=lambda line, arm=arm: print(arm, line, flush=True))
        history = training_history(config.output)
        evaluate(arm, predictor, {
            "train_records": len(arms[arm]),
            "epochs_done": len(history),
            "best_epoch": predictor.metadata.get("best", {}).get("epoch"),
            "train_seconds": sum(float(row["epoch_seconds"]) for row in history),
            "this_call_seconds": time.perf_counter() - start,
        })
    for spec in args.model:
        name, _, folder = spec.partition("=")
        if name not in result["runs"]:
            predictor = Predictor.load(Path(folder))
            evaluate(name, predictor, {"model": folder, "digest": predictor.digest,
                                       "train_records": predictor.metadata.get("n_train"),
                                       "best_epoch": predictor.metadata.get("best", {}).get("epoch")})


if __name__ == "__main__":
    main()
