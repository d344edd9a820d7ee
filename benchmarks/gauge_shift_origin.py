"""Where a model's per-cell constant shift c (its raw minus c-aligned eigenvalue error) comes from.

    .venv/bin/python benchmarks/gauge_shift_origin.py --model examples/models/wse2_vacancies_first_step \
        --config examples/wse2_first_step_model.yaml --data example_data/wse2_3x2_b015 \
        --tight /tmp/tight --out benchmarks/results/gauge_shift_origin_wse2.json

H and H + c S have the same states; a model whose H differs from GPAW's by c S has every
eigenvalue off by c. For each record of --data (training and validation split of --config)
the script reports, in meV:

1. the model's c (mlh.inference.metrics.gauge_shift) and the c of the record's baseline
   (H0, or B for first-step records), both against the SCF H: how much of the baseline's
   shift the model removes, and whether the shift left is as large on the training cells
   as on the validation cells (a local model that cannot represent it) or only on the
   validation cells (overfitting);
2. how well cell-level sums of local quantities predict c, leave-one-cell-out (ridge on
   standardised features): per species, the number of atoms and the sum of the model's
   on-site potential shifts dv (benchmarks/onsite_error_analysis.py), both per periodic
   measure (area for cells periodic in two directions, volume in three). A potential zero
   made of local contributions (dipole or quadrupole layers) would be such a sum;
3. with --tight DIR (records of some of the same structures from a tighter SCF, e.g.
   `density_convergence: 1.0e-7` in a copy of the GPAW config, `mlh generate` on those
   frames): c and H MAE between the two SCF Hamiltonians, the part of c that is the
   reference's convergence.

Writes the JSON given by --out (default benchmarks/results/gauge_shift_origin.json).
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np

from analysis.hole import cell_area
from mlh.inference.metrics import gauge_shift, matrix_element_errors
from mlh.inference.prediction import predict_record
from mlh.model.config import load_config
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import read_record, record_files
from mlh.train.loop import split_files

from _results import write_results
from onsite_error_analysis import leave_one_out_ridge, onsite_shifts


def periodic_measure(record: HamiltonianRecord) -> float:
    """Area (Å^2) of a cell periodic in two directions, volume (Å^3) in three, 1 otherwise."""
    open_axes = np.flatnonzero(~np.asarray(record.pbc, dtype=bool))
    if len(open_axes) == 0:
        return float(abs(np.linalg.det(record.cell)))
    if len(open_axes) == 1:
        return cell_area(record.cell, int(open_axes[0]))
    return 1.0


def cell_sums(record: HamiltonianRecord, correction_dv: np.ndarray, species: list[int]) -> list[float]:
    """Per species: atom count and summed model on-site dv (eV), per periodic measure."""
    measure = periodic_measure(record)
    sums = []
    for z in species:
        mine = record.numbers == z
        sums += [mine.sum() / measure, correction_dv[mine].sum() / measure]
    return sums


def tight_check(folder: Path, references: dict[str, HamiltonianRecord]) -> list[dict]:
    """c and H MAE (meV) of each record in `folder` against the record of --data with the
    same positions."""
    rows = []
    for path in record_files([folder]):
        tight = read_record(path)
        match = [name for name, ref in references.items()
                 if ref.positions.shape == tight.positions.shape
                 and np.allclose(ref.positions, tight.positions, atol=1e-6)]
        if not match:
            raise SystemExit(f"{path}: no record of --data has these positions")
        reference = references[match[0]]
        errors = matrix_element_errors(reference, tight)
        rows.append({"record": match[0], "tight_record": path.name,
                     "c": 1000 * gauge_shift(reference, tight),
                     "H_mae": 1000 * float(errors["mae_all"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True, help="training config (its split)")
    parser.add_argument("--data", type=Path, nargs="+", required=True,
                        help="record folders (with baseline)")
    parser.add_argument("--tight", type=Path, help="records of the same structures, tighter SCF")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gauge_shift_origin.json"))
    args = parser.parse_args()

    predictor = Predictor.load(args.model)
    train, valid = split_files(load_config(args.config).data)
    split = {p.stem: "train" for p in train} | {p.stem: "valid" for p in valid}
    paths = record_files(args.data)
    references = {p.stem: read_record(p) for p in paths}
    species = sorted({int(z) for ref in references.values() for z in ref.numbers})

    rows, features = [], []
    for name, reference in references.items():
        predicted = predict_record(predictor, reference, source=name)
        correction_dv = onsite_shifts(reference, (predicted.H_onsite - reference.H0_onsite)[0])
        features.append(cell_sums(reference, correction_dv, species))
        rows.append({"record": name, "split": split.get(name, "other"),
                     "c_model": 1000 * gauge_shift(predicted, reference),
                     "c_baseline": 1000 * gauge_shift(reference.baseline_as_hamiltonian(), reference)})
        print(f"{name} ({rows[-1]['split']}): c model {rows[-1]['c_model']:+.1f} meV, "
              f"baseline {rows[-1]['c_baseline']:+.1f} meV", flush=True)

    c_model = np.array([r["c_model"] for r in rows]) / 1000
    c_baseline = np.array([r["c_baseline"] for r in rows]) / 1000
    cells = np.arange(len(rows))
    mean_abs = {part: float(np.mean([abs(r["c_model"]) for r in rows if r["split"] == part]))
                for part in ("train", "valid") if any(r["split"] == part for r in rows)}
    result = {
        "machine": f"{platform.machine()}, {platform.system()}",
        "model": str(args.model), "config": str(args.config), "data": [str(d) for d in args.data],
        "records": rows,
        "mean_abs_c_model": mean_abs,
        "mean_abs_c_baseline": float(np.abs(c_baseline).mean() * 1000),
        "corr_c_model_c_baseline": float(np.corrcoef(c_model, c_baseline)[0, 1]),
        "cell_sum_features": [f"{name}_{z}" for z in species for name in ("count", "dv_sum")],
        "loo_cell_sums": leave_one_out_ridge(c_model, np.array(features), cells),
    }
    if args.tight:
        result["tight_scf"] = tight_check(args.tight, references)
    print(write_results(result, args.out))


if __name__ == "__main__":
    main()
