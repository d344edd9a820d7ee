"""Accuracy of trained models on a training configuration's validation records and on
larger records (issue 16's targets), side by side.

    .venv/bin/python benchmarks/model_accuracy.py --config examples/wse2_correction_model.yaml \
        --model old=OLD_MODEL --model new=examples/models/wse2_vacancies_correction \
        --records large=example_data/wse2_6x3_h0 --out benchmarks/results/model_accuracy_wse2.json

For each model: H MAE all / on-site / off-site / per species pair and eigenvalue MAE within
E_F +- 5 eV, raw and after the best c·S per structure (`correction_ab.evaluate_model`), on the
configuration's validation split and on every named set of --records (for example GPAW cells
larger than any training cell). For a committee (mlh ensemble) also the members' on-site
spread per record beside the committee's on-site error, and their correlation. Units: meV.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np

from mlh.inference.prediction import predict_record
from mlh.model.config import load_config
from mlh.model.predictor import EnsemblePredictor, Predictor
from mlh.record.io import read_record, record_files
from mlh.train.loop import split_files

from _results import write_results
from correction_ab import evaluate_model


def committee_spread(committee: EnsemblePredictor, sets: dict[str, dict]) -> dict:
    """Per record: the mean over on-site values of the members' standard deviation, and
    of the committee's |H - H_GPAW| (meV); and their correlation over all records."""
    rows = {}
    for set_name, records in sets.items():
        for record_name, reference in records.items():
            onsite = np.stack([predict_record(m, reference, record_name).H_onsite[0]
                               for m in committee.members])
            error = np.abs(onsite.mean(axis=0) - reference.H_onsite[0])
            rows[f"{set_name}/{record_name}"] = {
                "onsite_spread_meV": 1e3 * float(onsite.std(axis=0).mean()),
                "onsite_error_meV": 1e3 * float(error.mean())}
    spread, error = (np.array([r[key] for r in rows.values()])
                     for key in ("onsite_spread_meV", "onsite_error_meV"))
    return {"records": rows, "correlation": float(np.corrcoef(spread, error)[0, 1]),
            "error_over_spread": [float((error / spread).min()), float((error / spread).max())]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="training configuration (its validation split)")
    parser.add_argument("--model", action="append", required=True, help="NAME=FOLDER of a model")
    parser.add_argument("--records", action="append", default=[],
                        help="NAME=PATH[,PATH...]: a set of GPAW records (folders or files) to evaluate on")
    parser.add_argument("--window", type=float, default=5.0, help="eigenvalues within E_F +- this, eV")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    _, valid = split_files(load_config(args.config).data)
    sets = {"valid": {p.stem: read_record(p) for p in valid}}
    for spec in args.records:
        name, _, paths = spec.partition("=")
        sets[name] = {p.stem: read_record(p) for p in record_files([Path(q) for q in paths.split(",")])}
    result = {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
              "config": str(args.config), "records": {name: list(records) for name, records in sets.items()},
              "models": {}}
    for spec in args.model:
        name, _, folder = spec.partition("=")
        predictor = Predictor.load(Path(folder))
        result["models"][name] = {"folder": folder, "digest": predictor.digest, **{
            set_name: evaluate_model(predictor, records, args.window) for set_name, records in sets.items()}}
        if isinstance(predictor, EnsemblePredictor):
            result["models"][name]["committee_spread"] = committee_spread(predictor, sets)
        for set_name in sets:
            r = result["models"][name][set_name]
            print(f"{name} {set_name}: H MAE {r['raw']['H_mae']:.3f} meV (aligned {r['aligned']['H_mae']:.3f}; "
                  f"on-site {r['raw']['onsite_mae']:.2f}, off-site {r['raw']['offsite_mae']:.3f}), eigenvalues "
                  f"{r['raw']['eigenvalue_mae_window']:.1f} meV (aligned {r['aligned']['eigenvalue_mae_window']:.1f})",
                  flush=True)
    write_results(result, args.out)


if __name__ == "__main__":
    main()
