"""Fit the Harris-Foulkes share of the dft route's functional on a model's validation records.

    .venv/bin/python benchmarks/harris_share.py --model examples/models/sio2_correction \
        --config examples/sio2_correction_model.yaml \
        --records example_data/sio2_train_c3/sio2_train_c3-00{16..23}.nc \
        --out benchmarks/results/harris_share_sio2.json

The dft route's Kohn-Sham and Harris-Foulkes free energies at a model's density err with
opposite signs (docs/physics.md), and so do their forces. For A_s = (1 - s) A_KS + s A_HF,
this evaluates both functionals' energies and exact forces (physics.dft.forces.ModelDFTRoute)
on GPAW records with energies and forces (the validation split of --config, plus --records,
never test cells) and fits s by least squares over all force components (and, reported
beside it, over the energies per atom). It reports per record and in all the Kohn-Sham,
Harris, mean and fitted-share errors: energy (meV/atom) and force MAE (meV/Å). The fitted
share is what `MLHCalculator(functional=s)` and the drivers' `--functional s` take; with
--write-model it is stored in the model folder (harris_share.json, three decimals), where
`functional="fitted"` finds it. A share already stored there is evaluated too ("stored"):
given records it was not fitted on, that is its out-of-sample check.

Each record's evaluations are stored in WORKDIR/model-<digest>/<record>.json as they finish,
so a killed run resumes. GPAW settings from --gpaw-config (those of the model's data).
Units: eV, Å, meV.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from mlh.gpaw.record_settings import record_atoms
from mlh.gpaw.settings import load_settings
from mlh.model.config import load_config
from mlh.model.predictor import Predictor
from mlh.record.io import read_record
from mlh.train.loop import split_files
from physics.dft.forces import ModelDFTRoute
from physics.dft.functional import FITTED_SHARE_FILE, fitted_share

from _results import write_results

ROOT = Path(__file__).resolve().parents[1]


def evaluate_record(path: Path, routes: dict[str, ModelDFTRoute]) -> dict:
    """GPAW's energy and forces of a record and both functionals' at the model's density."""
    record = read_record(path)
    if record.labels is None or record.labels.forces is None:
        raise SystemExit(f"{path}: the record has no GPAW forces")
    atoms = record_atoms(record)
    row = {"n_atoms": record.n_atoms, "gpaw_energy": float(record.labels.energy),
           "gpaw_forces": np.asarray(record.labels.forces).tolist()}
    for name, route in routes.items():
        start = time.perf_counter()
        result = route.evaluate(atoms)
        row[name] = {"energy": result.energy, "harris_energy": result.harris_energy,
                     "forces": result.forces.tolist(), "seconds": time.perf_counter() - start}
    return row


def errors(rows: list[dict], share: float) -> dict:
    """Energy errors (meV/atom, per record) and force MAE (meV/Å, all components) of A_s."""
    energy = [1e3 * ((1 - share) * r["kohn-sham"]["energy"]
                     + share * r["kohn-sham"]["harris_energy"]
                     - r["gpaw_energy"]) / r["n_atoms"] for r in rows]
    forces = np.concatenate([((1 - share) * np.array(r["kohn-sham"]["forces"])
                              + share * np.array(r["harris"]["forces"])
                              - np.array(r["gpaw_forces"])).ravel() for r in rows])
    return {"energy_errors_meV_per_atom": energy,
            "mean_abs_energy_error_meV_per_atom": float(np.mean(np.abs(energy))),
            "force_mae_meV_per_angstrom": 1e3 * float(np.abs(forces).mean())}


def least_squares_share(kohn_sham: np.ndarray, harris: np.ndarray) -> float:
    """s minimising sum |(1 - s) e_KS + s e_HF|^2 over the errors e."""
    difference = harris - kohn_sham
    return float(-np.dot(kohn_sham, difference) / np.dot(difference, difference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="training configuration (its validation "
                        "split is used)")
    parser.add_argument("--records", type=Path, nargs="*", default=[],
                        help="more GPAW records (not training records)")
    parser.add_argument("--gpaw-config", type=Path, default=ROOT / "examples" / "sio2_gpaw.yaml")
    parser.add_argument("--workdir", type=Path, default=ROOT / "out" / "harris_share")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--write-model", action="store_true", help="also store the fitted "
                        "share in the model folder (harris_share.json), which "
                        "functional='fitted' reads")
    args = parser.parse_args()

    predictor = Predictor.load(args.model)
    settings = load_settings(args.gpaw_config)
    paths = [*(split_files(load_config(args.config).data)[1] if args.config else []), *args.records]
    if not paths:
        raise SystemExit("no records: give --config (its validation split) or --records")
    cache = args.workdir / f"model-{predictor.digest[:12]}"
    cache.mkdir(parents=True, exist_ok=True)
    routes = {name: ModelDFTRoute(predictor, settings, functional=name)
              for name in ("kohn-sham", "harris")}
    rows = {}
    for path in paths:
        stored = cache / f"{Path(path).stem}.json"
        if not stored.exists():
            write_results(evaluate_record(Path(path), routes), stored)
        rows[Path(path).name] = json.loads(stored.read_text())
        print(path, {k: round(v, 2) if isinstance(v, float) else v
                     for k, v in errors([rows[Path(path).name]], 0.5).items()}, flush=True)
    all_rows = list(rows.values())

    def stacked_force_errors(name: str) -> np.ndarray:
        return np.concatenate([(np.array(r[name]["forces"]) - np.array(r["gpaw_forces"])).ravel()
                               for r in all_rows])

    def energy_errors(key: str) -> np.ndarray:
        return np.array([(r["kohn-sham"][key] - r["gpaw_energy"]) / r["n_atoms"] for r in all_rows])

    share = least_squares_share(stacked_force_errors("kohn-sham"), stacked_force_errors("harris"))
    energy_share = least_squares_share(energy_errors("energy"), energy_errors("harris_energy"))
    shares = {"kohn-sham": 0.0, "harris": 1.0, "mean": 0.5, "fitted": share}
    if (args.model / FITTED_SHARE_FILE).exists():  # out of sample on records it was not fitted on
        shares["stored"] = fitted_share(args.model)
    result = {
        "machine": platform.platform(), "model": str(args.model), "model_digest": predictor.digest,
        "records": list(rows), "n_force_components": int(stacked_force_errors("harris").size),
        "fitted_share_forces": share, "fitted_share_energies": energy_share,
        "shares": shares,
        "per_share": {name: errors(all_rows, value) for name, value in shares.items()},
        "per_record_fitted": {name: errors([row], share) for name, row in rows.items()},
        "seconds_per_record": {name: {f: row[f]["seconds"] for f in ("kohn-sham", "harris")}
                               for name, row in rows.items()},
    }
    print(json.dumps({k: result[k] for k in ("fitted_share_forces", "fitted_share_energies")}),
          {name: (round(e["mean_abs_energy_error_meV_per_atom"], 2),
                  round(e["force_mae_meV_per_angstrom"], 1))
           for name, e in result["per_share"].items()})
    write_results(result, args.out)
    print(f"written to {args.out}")
    if args.write_model:
        stored = args.model / FITTED_SHARE_FILE
        write_results({"harris_share": round(share, 3), "fitted_by": "benchmarks/harris_share.py",
                       "model_digest": predictor.digest, "records": list(rows),
                       "n_force_components": result["n_force_components"],
                       "force_mae_meV_per_angstrom": {
                           name: errors(all_rows, value)["force_mae_meV_per_angstrom"]
                           for name, value in (("kohn-sham", 0.0), ("fitted", round(share, 3)))}},
                      stored)
        print(f"written to {stored}")


if __name__ == "__main__":
    main()
