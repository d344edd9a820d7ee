"""What the SiO2 correction model's on-site error is made of (issue 16's error budget).

    .venv/bin/python benchmarks/onsite_error_analysis.py --model examples/models/sio2_correction \
        --config examples/sio2_correction_model.yaml --data example_data/sio2_train_h0

Per atom a of every record, the scalar part of an on-site block X is its projection on the
atom's overlap block, dv(X) = <X, S_aa> / <S_aa, S_aa> (eV): a potential shift of the atom's
orbitals. The script reports, per species:

1. the target dH = H - H0 on-site: its dv spread within each structure, and how much of that
   a per-species linear fit (over all records, centred per structure) on the Madelung
   potential phi_a (Ewald sum of the SCF's Mulliken charges, V) and on the charge q_a (e)
   explains: the charge-transfer electrostatics that H0 (neutral atoms) lacks;
2. the model's on-site error on the validation split of the model's configuration: its MAE,
   the MAE left after removing each atom's dv (the share that is a potential shift), and
   how much of the dv error the same (phi, q) fit explains (long-range electrostatics the
   local model might miss);
3. how much of the dv error and of the target dv a ridge fit on invariants of H0's on-site
   block (its dv and the eigenvalues of H0_aa - dv S_aa) explains, leave-one-structure-out:
   a linear proxy for H0 as an input feature.

"H0" is the records' baseline: for first-step records (`mlh generate --first-step-share`) and
a first-step model it is B = H0 + s (H[n0] - H0), and the fits test B as an input feature:

    .venv/bin/python benchmarks/onsite_error_analysis.py --model examples/models/sio2_first_step \
        --config examples/sio2_first_step_model.yaml --data example_data/sio2_train_b045 \
        --out benchmarks/results/onsite_error_analysis_first_step.json

Writes benchmarks/results/onsite_error_analysis.json. Units: meV.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
from scipy.special import erfc

from mlh.gpaw.record_settings import record_atoms, settings_from_record
from mlh.inference.prediction import predict_record
from mlh.model.config import load_config
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import read_record, record_files
from mlh.train.loop import split_files
from physics.density_matrix import density_matrices_for_record, orbital_atoms
from physics.dft.functional import valence_charges
from physics.mulliken import mulliken_charges

from _results import write_results

COULOMB = 14.399645
"""e^2 / (4 pi eps0) in eV Å."""


def _lattice_points(vectors: np.ndarray, radius: float, skip_origin: bool) -> np.ndarray:
    """Integer combinations of the rows of `vectors` with norm below `radius`."""
    inverse = np.linalg.inv(vectors)
    n = [int(np.ceil(radius * np.linalg.norm(inverse[:, k]))) + 1 for k in range(3)]
    grid = np.stack(np.meshgrid(*(np.arange(-m, m + 1) for m in n), indexing="ij"), -1).reshape(-1, 3)
    points = grid @ vectors
    keep = np.linalg.norm(points, axis=1) < radius
    if skip_origin:
        keep &= np.any(grid != 0, axis=1)
    return points[keep]


def madelung_potentials(positions: np.ndarray, cell: np.ndarray, charges: np.ndarray,
                        alpha: float = 0.35, real_cutoff: float = 14.0, reciprocal_cutoff: float = 6.0) -> np.ndarray:
    """(n,) electrostatic potential (V) at each atom of periodic point charges (e), the
    atom's own charge excluded (Ewald sum; alpha in 1/Å, cutoffs in Å and 1/Å)."""
    shifts = _lattice_points(cell, real_cutoff + np.ptp(positions, axis=0).max(), skip_origin=False)
    potentials = np.zeros(len(positions))
    for a, position in enumerate(positions):
        r = np.linalg.norm(positions[None, :, :] + shifts[:, None, :] - position, axis=-1)
        keep = (r > 1e-8) & (r < real_cutoff)
        potentials[a] = np.sum(np.broadcast_to(charges, r.shape)[keep] * erfc(alpha * r[keep]) / r[keep])
    reciprocal = 2 * np.pi * np.linalg.inv(cell).T
    g = _lattice_points(reciprocal, reciprocal_cutoff, skip_origin=True)
    g2 = np.sum(g**2, axis=1)
    phases = np.exp(1j * positions @ g.T)
    structure_factor = phases.T @ charges
    volume = abs(np.linalg.det(cell))
    potentials += (4 * np.pi / volume) * np.real(phases.conj() @ (np.exp(-g2 / (4 * alpha**2)) / g2 * structure_factor))
    potentials -= 2 * alpha / np.sqrt(np.pi) * charges
    return COULOMB * potentials


def onsite_shifts(record: HamiltonianRecord, onsite_values: np.ndarray) -> np.ndarray:
    """(n_atoms,) dv (eV) of the on-site blocks `onsite_values` of a record."""
    shifts = np.empty(record.n_atoms)
    for a in range(record.n_atoms):
        s = record.onsite_block(record.S_onsite, a)
        shifts[a] = np.sum(record.onsite_block(onsite_values, a) * s) / np.sum(s * s)
    return shifts


def scf_charges(record: HamiltonianRecord) -> np.ndarray:
    """(n_atoms,) Mulliken charges (e) of the record's H at its SCF k-points."""
    dm = density_matrices_for_record(record)
    overlaps = np.stack([record.overlap_k(k).toarray() for k in dm.kpoints])
    valence = valence_charges(record_atoms(record), settings_from_record(record))
    return mulliken_charges(dm, overlaps, orbital_atoms(record), valence)


def _centred(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Values minus the mean of their group (structure), along the first axis."""
    means = {g: values[groups == g].mean(axis=0) for g in np.unique(groups)}
    return values - np.stack([means[g] for g in groups])


def _explained(target: np.ndarray, features: np.ndarray, groups: np.ndarray) -> dict:
    """MAE (meV) of target centred per structure, before and after a least-squares fit on
    the centred features, and the fit's weights."""
    y, x = _centred(target, groups), _centred(features, groups)
    weights, *_ = np.linalg.lstsq(x, y, rcond=None)
    return {"before": 1000 * np.abs(y).mean(), "after": 1000 * np.abs(y - x @ weights).mean(),
            "weights": weights.tolist()}


def leave_one_out_ridge(target: np.ndarray, features: np.ndarray, groups: np.ndarray, ridge: float = 1e-2) -> dict:
    """MAE (meV) of target about its mean and of leave-one-structure-out ridge predictions."""
    x = (features - features.mean(0)) / (features.std(0) + 1e-12)
    x = np.c_[x, np.ones(len(x))]
    predicted = np.empty_like(target)
    for g in np.unique(groups):
        train, test = groups != g, groups == g
        w = np.linalg.solve(x[train].T @ x[train] + ridge * np.eye(x.shape[1]), x[train].T @ target[train])
        predicted[test] = x[test] @ w
    return {"before": 1000 * np.abs(target - target.mean()).mean(), "after": 1000 * np.abs(target - predicted).mean()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("examples/models/sio2_correction"))
    parser.add_argument("--data", type=Path, default=Path("example_data/sio2_train_h0"))
    parser.add_argument("--config", type=Path, default=Path("examples/sio2_correction_model.yaml"),
                        help="the model's training configuration (its validation split is used)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/onsite_error_analysis.json"))
    args = parser.parse_args()

    predictor = Predictor.load(args.model)
    files = record_files([args.data])
    data = load_config(args.config).data.model_copy(update={"train_path": [args.data], "valid_path": []})
    _, valid = split_files(data)
    valid_names = {p.stem for p in valid}
    rows = []  # (structure, Z, q, phi, target dv, is_valid, error dv, error MAE, MAE after dv, H0 invariants...)
    for index, path in enumerate(files):
        record = read_record(path)
        charges = scf_charges(record)
        phi = madelung_potentials(record.positions, record.cell, charges)
        target = onsite_shifts(record, record.H_onsite[0] - record.H0_onsite[0])
        baseline = onsite_shifts(record, record.H0_onsite[0])
        if path.stem in valid_names:
            predicted = predict_record(predictor, record, str(path))
            error_values = predicted.H_onsite[0] - record.H_onsite[0]
            error = onsite_shifts(record, error_values)
        for a in range(record.n_atoms):
            s = record.onsite_block(record.S_onsite, a)
            invariants = np.linalg.eigvalsh(record.onsite_block(record.H0_onsite[0], a) - baseline[a] * s)
            row = [index, record.numbers[a], charges[a], phi[a], target[a], path.stem in valid_names]
            if path.stem in valid_names:
                block = record.onsite_block(error_values, a)
                row += [error[a], np.abs(block).mean(), np.abs(block - error[a] * s).mean()]
            else:
                row += [np.nan] * 3
            rows.append(row + [baseline[a], *invariants])
        print(path.stem, flush=True)
    table = np.array(rows, dtype=float)
    result = {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
              "model": str(args.model), "model_digest": predictor.digest, "data": str(args.data), "valid_records": sorted(valid_names),
              "species": {}}
    for z in np.unique(table[:, 1]).astype(int):
        rows_z = table[table[:, 1] == z]
        groups = rows_z[:, 0]
        electrostatic = rows_z[:, 2:4][:, ::-1]  # (phi, q)
        v = rows_z[:, 5] == 1
        h0_features = rows_z[:, 9:]
        result["species"][int(z)] = {
            "target_dv_spread_fit_phi_q": _explained(rows_z[:, 4], electrostatic, groups),
            "target_dv_from_H0_invariants_loso": leave_one_out_ridge(rows_z[v, 4], h0_features[v], groups[v]),
            "model_onsite_mae": 1000 * rows_z[v, 7].mean(),
            "model_onsite_mae_after_removing_dv": 1000 * rows_z[v, 8].mean(),
            "model_dv_error_mae": 1000 * np.abs(rows_z[v, 6]).mean(),
            "model_dv_error_fit_phi_q": _explained(rows_z[v, 6], electrostatic[v], groups[v]),
            "model_dv_error_from_H0_invariants_loso": leave_one_out_ridge(rows_z[v, 6], h0_features[v], groups[v]),
        }
    print(write_results(result, args.out))


if __name__ == "__main__":
    main()
