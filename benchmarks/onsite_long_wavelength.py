"""How much of a model's on-site error is a potential varying slowly across the cell.

    .venv/bin/mlh generate out/test_records/hosts.extxyz -o out/test_records/hosts \
        --config examples/sio2_gpaw.yaml --baseline      # the physics benchmark's host cells
    .venv/bin/python benchmarks/onsite_long_wavelength.py --model examples/models/sio2_correction \
        example_data/sio2_train/sio2_train-0010.nc out/test_records/hosts/*.nc \
        --out benchmarks/results/onsite_long_wavelength_sio2.json

Per atom a of each GPAW record, dv_a = <X_aa, S_aa> / <S_aa, S_aa> is the potential-shift
part of an on-site block X (as in onsite_error_analysis.py): of the target dH = H - H0, of
the model's dH and of its error. For each cell axis, the error's dv is fitted by a
constant per species plus the longest wave the cell allows along that axis (cos and sin of
2 pi times the fractional coordinate); the amplitude of that wave and the spread left
after it say how much of the error is a slowly varying potential, which a model with a
finite cutoff trained on short cells cannot represent. A second fit, on the Madelung
potential of the SCF's Mulliken charges and the charge (per species), says whether that
potential is electrostatic. Units: meV.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
from onsite_error_analysis import madelung_potentials, onsite_shifts, scf_charges

from mlh.inference.prediction import predict_record
from mlh.model.predictor import Predictor
from mlh.record.io import read_record

from _results import write_results


def longest_wave_fit(error: np.ndarray, fractional: np.ndarray, numbers: np.ndarray) -> dict:
    """Per axis: amplitude (meV) of the longest wave in a fit of `error` by a constant per
    species plus that wave, and the spread (std) left after the fit."""
    species = [(numbers == z).astype(float) for z in np.unique(numbers)]
    result = {}
    for axis in range(3):
        phase = 2 * np.pi * fractional[:, axis]
        design = np.column_stack([*species, np.cos(phase), np.sin(phase)])
        coefficients, *_ = np.linalg.lstsq(design, error, rcond=None)
        residual = error - design @ coefficients
        result["abc"[axis]] = {"amplitude": float(np.hypot(*coefficients[-2:])),
                               "spread_left": float(residual.std())}
    return result


def electrostatic_fit(error: np.ndarray, madelung: np.ndarray, charges: np.ndarray,
                      numbers: np.ndarray) -> dict:
    """Fit of `error` (meV) by a constant, a slope on the Madelung potential (V, Ewald sum of
    the SCF's Mulliken charges) and one on the charge (e), each per species: slopes (meV/V,
    meV/e) and the spread left."""
    columns = []
    for z in np.unique(numbers):
        mask = (numbers == z).astype(float)
        columns += [mask, mask * madelung, mask * charges]
    design = np.column_stack(columns)
    coefficients, *_ = np.linalg.lstsq(design, error, rcond=None)
    slopes = {}
    for k, z in enumerate(np.unique(numbers)):
        slopes[str(int(z))] = {"per_volt": float(coefficients[3 * k + 1]),
                               "per_charge": float(coefficients[3 * k + 2])}
    return {"slopes": slopes, "spread_left": float((error - design @ coefficients).std())}


def analyse(predictor: Predictor, path: Path) -> dict:
    """The dv spreads of target, model and error, and the longest-wave fits, of one record."""
    reference = read_record(path)
    if reference.H0_onsite is None:
        raise SystemExit(f"{path}: no H0 in this record; generate it with --baseline")
    predicted = predict_record(predictor, reference, path.stem)
    target = 1e3 * onsite_shifts(reference, reference.H_onsite[0] - reference.H0_onsite[0])
    model = 1e3 * onsite_shifts(reference, predicted.H_onsite[0] - reference.H0_onsite[0])
    error = model - target
    fractional = (reference.positions @ np.linalg.inv(reference.cell)) % 1.0
    charges = scf_charges(reference)
    madelung = madelung_potentials(reference.positions, reference.cell, charges)
    return {
        "atoms": int(reference.n_atoms),
        "cell_lengths_angstrom": np.linalg.norm(reference.cell, axis=1).round(3).tolist(),
        "target_dv_spread": float(target.std()),
        "model_dv_spread": float(model.std()),
        "error_dv_spread": float(error.std()),
        "error_dv_mae": float(np.abs(error - error.mean()).mean()),
        "longest_wave_of_error": longest_wave_fit(error, fractional, reference.numbers),
        "longest_wave_of_target": longest_wave_fit(target, fractional, reference.numbers),
        "error_fit_on_madelung": electrostatic_fit(error, madelung, charges, reference.numbers),
        "longest_wave_of_madelung_potential": longest_wave_fit(1e3 * madelung, fractional,
                                                               reference.numbers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+", help="GPAW records with H0 (.nc)")
    parser.add_argument("--model", type=Path, required=True, help="correction model folder")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    predictor = Predictor.load(args.model)
    result = {"machine": platform.platform(), "model": str(args.model), "records": {}}
    for path in args.records:
        found = result["records"][str(path)] = analyse(predictor, path)
        waves = ", ".join(f"{axis} {fit['amplitude']:.0f} ({fit['spread_left']:.0f} left)"
                          for axis, fit in found["longest_wave_of_error"].items())
        print(f"{path.stem}: {found['atoms']} atoms, target dv spread "
              f"{found['target_dv_spread']:.0f}, error dv spread {found['error_dv_spread']:.0f}; "
              f"longest wave of the error per axis: {waves} meV; after a fit on the Madelung "
              f"potential and charge {found['error_fit_on_madelung']['spread_left']:.0f} left",
              flush=True)
    write_results(result, args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
