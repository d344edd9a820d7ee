"""Error budget of the DFT-functional route: which errors of a predicted H cost how much energy.

    .venv/bin/python benchmarks/physics_error_budget.py --model example_output/sio2_training/model \
        --config examples/sio2_model.yaml

For each validation record of the training configuration (or each of --records; GPAW's H
known), GPAW's Kohn-Sham functional is evaluated at the state of

  - GPAW's own H (the control: the SCF energy),
  - the model's H,
  - the model's on-site blocks with GPAW's pair blocks, and GPAW's on-site blocks with the
    model's pair blocks (which part of the error matters),
  - H_GPAW + f (H_model - H_GPAW) for each --fractions f (how the energy error falls with
    the matrix-element error: quadratically, as the functional is stationary at the SCF
    density, so the fraction that would meet a target can be read off).

Reports per record and variant the errors of the Kohn-Sham and Harris-Foulkes energies
(meV/atom) against GPAW's SCF energy, and the mean |H_variant - H_GPAW| of the on-site
values (meV). Prints a table and writes --output (JSON). Units: eV, Å, meV.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from mlh.gpaw.record_settings import record_atoms, record_scf_kpts, settings_from_record
from mlh.inference.prediction import predict_record
from mlh.model.config import load_config
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import read_record
from mlh.train.loop import split_files
from physics.dft.functional import evaluate_dft_functional

from _results import write_results

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="model folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", type=Path,
                        help="the model's training YAML (its validation split is used)")
    source.add_argument("--records", type=Path, nargs="+",
                        help="GPAW records to use instead (e.g. cells larger than the training's)")
    parser.add_argument("--fractions", type=float, nargs="*", default=[0.5, 0.25, 0.1],
                        help="fractions f of the model's error to keep")
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks" / "results" / "physics_error_budget.json")
    return parser.parse_args()


def dense_hamiltonian(record: HamiltonianRecord):
    """hamiltonian_k(k, spin) -> dense H (eV) of a record."""
    return lambda k, spin: record.hamiltonian_k(k, spin).toarray()


def mixed_hamiltonian(reference: HamiltonianRecord, predicted: HamiltonianRecord, fraction: float):
    """hamiltonian_k(k, spin) of H_ref + fraction (H_pred - H_ref), dense, eV."""
    def hamiltonian_k(k, spin):
        h_ref = reference.hamiltonian_k(k, spin).toarray()
        return h_ref + fraction * (predicted.hamiltonian_k(k, spin).toarray() - h_ref)
    return hamiltonian_k


def evaluate(reference: HamiltonianRecord, hamiltonian_k) -> tuple[float, float, float]:
    """Kohn-Sham and Harris-Foulkes energies (eV) of the state of hamiltonian_k, and seconds."""
    start = time.perf_counter()
    result = evaluate_dft_functional(
        record_atoms(reference), settings_from_record(reference), hamiltonian_k,
        kpts=record_scf_kpts(reference), forces=False,
        overlap_k=lambda k: reference.overlap_k(k).toarray())
    return result.energy, result.harris_energy, time.perf_counter() - start


def record_budget(reference: HamiltonianRecord, predicted: HamiltonianRecord,
                  fractions: list[float]) -> dict:
    """Energy errors (meV/atom) and mean on-site |H - H_GPAW| (meV) of every variant."""
    onsite_error = 1e3 * float(np.abs(predicted.H_onsite - reference.H_onsite).mean())
    jobs = {
        "gpaw": (dense_hamiltonian(reference), 0.0),
        "model": (dense_hamiltonian(predicted), onsite_error),
        "model_onsite_gpaw_pairs": (dense_hamiltonian(
            dataclasses.replace(reference, H_onsite=predicted.H_onsite)), onsite_error),
        "gpaw_onsite_model_pairs": (dense_hamiltonian(
            dataclasses.replace(predicted, H_onsite=reference.H_onsite)), 0.0),
        **{f"fraction_{f:g}": (mixed_hamiltonian(reference, predicted, f), f * onsite_error)
           for f in fractions},
    }
    rows = {}
    for name, (hamiltonian_k, onsite) in jobs.items():
        energy, harris, seconds = evaluate(reference, hamiltonian_k)
        per_atom = 1e3 / reference.n_atoms
        row = rows[name] = {
            "kohn_sham_error_meV_per_atom": per_atom * (energy - reference.labels.energy),
            "harris_error_meV_per_atom": per_atom * (harris - reference.labels.energy),
            "onsite_mae_meV": onsite, "seconds": seconds}
        print(f"  {name:26s} KS {row['kohn_sham_error_meV_per_atom']:+9.3f}  Harris "
              f"{row['harris_error_meV_per_atom']:+9.3f} meV/atom  on-site |dH| {onsite:6.1f} "
              f"meV", flush=True)
    return rows


def main() -> None:
    args = parse_args()
    valid_files = args.records or split_files(load_config(args.config).data)[1]
    predictor = Predictor.load(args.model)
    summary: dict = {"model": str(args.model),
                     "config": None if args.config is None else str(args.config), "records": {}}
    for path in valid_files:
        reference = read_record(path)
        print(f"{path.name}: {reference.n_atoms} atoms", flush=True)
        predicted = predict_record(predictor, reference, source=str(path))
        summary["records"][path.name] = record_budget(reference, predicted, args.fractions)
    names = next(iter(summary["records"].values())).keys()
    summary["mean_abs_kohn_sham_error_meV_per_atom"] = {
        name: float(np.mean([abs(r[name]["kohn_sham_error_meV_per_atom"])
                             for r in summary["records"].values()])) for name in names}
    print(json.dumps(summary["mean_abs_kohn_sham_error_meV_per_atom"], indent=1))
    write_results(summary, args.output)
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
