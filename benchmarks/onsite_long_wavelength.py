"""How much of a model's on-site error is a potential varying slowly across the cell.

    # the physics benchmark's test cells as GPAW records: benchmarks/long_cells_finetune.sh
    .venv/bin/python benchmarks/onsite_long_wavelength.py --model examples/models/sio2_correction \
        example_data/sio2_train/sio2_train-00{10,21}.nc \
        example_data/sio2_train_more/sio2_train_more-000{0,1,2}.nc \
        example_data/sio2_physics_test_cells/sio2_physics_test_cells-000{0,2,3,6}.nc \
        --energies --out benchmarks/results/onsite_long_wavelength_sio2.json

(validation cells, cells the model was trained on, the 72-atom host and three 108/107-atom
test cells of seeds 2026 and 2027.)

Per atom a of each GPAW record, dv_a = <X_aa, S_aa> / <S_aa, S_aa> is the potential-shift
part of an on-site block X (as in onsite_error_analysis.py): of the target dH = H - H0, of
the model's dH and of its error. For each cell axis, the error's dv is fitted by a
constant per species plus the longest wave the cell allows along that axis (cos and sin of
2 pi times the fractional coordinate); the amplitude of that wave and the spread left
after it say how much of the error is a slowly varying potential, which a model with a
finite cutoff trained on short cells cannot represent. A second fit, on the Madelung
potential of the SCF's Mulliken charges and the charge (per species), says whether that
potential is electrostatic. With --energies, the Kohn-Sham energy error of the model's H
is compared with that of the model's H minus each fitted part of its error (the Madelung
fit, the largest longest wave), applied as a slowly varying potential on on-site and pair
blocks: an upper bound of what an exact long-range term could gain. The best per-atom
potential (a least-squares fit of u_a S_aa and (u_i + u_j) / 2 S_ij to the whole error, on-site
and pairs) bounds what any potential-like term, local or long-range, could gain; the best
shell potential (one level per radial function of each atom, (u_mu + u_nu) / 2 S_mu,nu) what a
shell-resolved one could. Units: meV.
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np

from mlh.inference.prediction import predict_record
from mlh.model.atom_potential import value_atoms
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import read_record

from _results import write_results
from onsite_error_analysis import madelung_potentials, onsite_shifts, scf_charges
from physics_error_budget import dense_hamiltonian, evaluate


def longest_wave_fit(error: np.ndarray, fractional: np.ndarray, numbers: np.ndarray
                     ) -> tuple[dict, np.ndarray]:
    """Per axis: amplitude (meV) of the longest wave in a fit of `error` by a constant per
    species plus that wave, and the spread (std) left after the fit; and the (3, n_atoms)
    fitted waves (meV)."""
    species = [(numbers == z).astype(float) for z in np.unique(numbers)]
    result, waves = {}, np.zeros((3, len(error)))
    for axis in range(3):
        phase = 2 * np.pi * fractional[:, axis]
        design = np.column_stack([*species, np.cos(phase), np.sin(phase)])
        coefficients, *_ = np.linalg.lstsq(design, error, rcond=None)
        residual = error - design @ coefficients
        waves[axis] = design[:, -2:] @ coefficients[-2:]
        result["abc"[axis]] = {"amplitude": float(np.hypot(*coefficients[-2:])),
                               "spread_left": float(residual.std())}
    return result, waves


def electrostatic_fit(error: np.ndarray, madelung: np.ndarray, charges: np.ndarray,
                      numbers: np.ndarray) -> tuple[dict, np.ndarray]:
    """Fit of `error` (meV) by a constant, a slope on the Madelung potential (V, Ewald sum of
    the SCF's Mulliken charges) and one on the charge (e), each per species: slopes (meV/V,
    meV/e) and the spread left, and the (n_atoms,) fitted values less each species' mean (meV)."""
    species = np.unique(numbers)
    columns = []
    for z in species:
        mask = (numbers == z).astype(float)
        columns += [mask, mask * madelung, mask * charges]
    design = np.column_stack(columns)
    coefficients, *_ = np.linalg.lstsq(design, error, rcond=None)
    slopes = {str(int(z)): {"per_volt": float(coefficients[3 * k + 1]),
                            "per_charge": float(coefficients[3 * k + 2])}
              for k, z in enumerate(species)}
    fitted = design @ coefficients
    fit = {"slopes": slopes, "spread_left": float((error - fitted).std())}
    for z in species:  # the varying part: each species' mean is a constant a local model learns
        fitted[numbers == z] -= fitted[numbers == z].mean()
    return fit, fitted


def pairs_in_layout(source: HamiltonianRecord, layout: HamiltonianRecord) -> np.ndarray:
    """H_pair of `source` placed in the pair layout of `layout`: zero for pairs `source` does
    not store; pairs `layout` does not store (a prediction's beyond the model's cutoff) left out."""
    def keys(record):
        return map(tuple, np.column_stack([record.pair_i, record.pair_j, record.pair_shift]).tolist())

    where = {key: n for n, key in enumerate(keys(layout))}
    values = np.zeros_like(layout.H_pair)
    for n, key in enumerate(keys(source)):
        m = where.get(key)
        if m is None:
            continue
        values[:, layout.pair_value_offsets[m]:layout.pair_value_offsets[m + 1]] = \
            source.H_pair[:, source.pair_value_offsets[n]:source.pair_value_offsets[n + 1]]
    return values


def value_orbitals(record: HamiltonianRecord) -> tuple[np.ndarray, np.ndarray]:
    """Row and column orbital (global index) of every stored value, on-site values first,
    then pair values (the order of `np.concatenate([H_onsite, H_pair])`)."""
    offsets, counts = record.orbital_offsets, record.orbital_counts
    atoms = value_atoms(record.pair_i, record.pair_j, counts)
    onsite_local = np.arange(len(atoms.onsite)) - record.onsite_value_offsets[atoms.onsite]
    pair_local = np.arange(len(atoms.pair_i)) - np.repeat(record.pair_value_offsets[:-1],
                                                          np.diff(record.pair_value_offsets))
    row_atoms = np.concatenate([atoms.onsite, atoms.pair_i])
    col_atoms = np.concatenate([atoms.onsite, atoms.pair_j])
    local = np.concatenate([onsite_local, pair_local])
    return offsets[row_atoms] + local // counts[col_atoms], offsets[col_atoms] + local % counts[col_atoms]


def orbital_atoms(record: HamiltonianRecord) -> np.ndarray:
    """The atom of every orbital: one potential level per atom."""
    return np.repeat(np.arange(record.n_atoms), record.orbital_counts)


def orbital_shells(record: HamiltonianRecord) -> np.ndarray:
    """A level per radial function of every atom (its s, p, d shells apart), per orbital."""
    levels, first = [], 0
    for number in record.numbers:
        ls = record.basis.for_number(int(number)).ls
        levels.append(first + np.repeat(np.arange(len(ls)), [2 * l + 1 for l in ls]))
        first += len(ls)
    return np.concatenate(levels)


def best_levels(error: HamiltonianRecord, orbital_level: np.ndarray) -> np.ndarray:
    """Potential levels u (meV) whose term (u_level(mu) + u_level(nu)) / 2 S_mu,nu best fits
    (least squares over every stored value) the H of `error` (the model's H minus GPAW's, in
    a record with S). With one level per atom (`orbital_atoms`) this is u_a S_aa on-site and
    (u_i + u_j) / 2 S_ij on pairs: the most any per-atom potential term, local or long-range,
    could remove; with one per shell (`orbital_shells`), the most a shell-resolved one could."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import lsqr

    rows, cols = value_orbitals(error)
    half = 0.5 * np.concatenate([error.S_onsite, error.S_pair])
    index = np.arange(len(rows))
    design = coo_matrix((np.concatenate([half, half]),
                         (np.concatenate([index, index]),
                          np.concatenate([orbital_level[rows], orbital_level[cols]]))),
                        shape=(len(rows), int(orbital_level.max()) + 1)).tocsr()
    values = 1e3 * np.concatenate([error.H_onsite[0], error.H_pair[0]])
    return lsqr(design, values, atol=1e-10, btol=1e-10)[0]


def levels_removed(record: HamiltonianRecord, levels: np.ndarray, orbital_level: np.ndarray
                   ) -> HamiltonianRecord:
    """`record` with H - (u_level(mu) + u_level(nu)) / 2 S_mu,nu for levels u (meV)."""
    rows, cols = value_orbitals(record)
    volts = 1e-3 * levels
    term = 0.5 * (volts[orbital_level[rows]] + volts[orbital_level[cols]]) * np.concatenate(
        [record.S_onsite, record.S_pair])
    n_onsite = record.n_onsite_values
    return replace(record, H_onsite=record.H_onsite - term[None, :n_onsite],
                   H_pair=record.H_pair - term[None, n_onsite:])


def energy_errors(reference: HamiltonianRecord, predicted: HamiltonianRecord,
                  removed: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """Kohn-Sham energy error (meV/atom, physics_error_budget.evaluate) of the model's H and
    of the model's H with each fitted part of its error removed (`levels_removed`; name ->
    (levels in meV, level of each orbital)): what an exact term of that form could gain at
    most (the fits are made on the error itself)."""
    records = {"model": predicted} | {f"{name}_removed": levels_removed(predicted, *fitted)
                                      for name, fitted in removed.items()}
    per_atom = 1e3 / reference.n_atoms
    return {name: per_atom * (evaluate(reference, dense_hamiltonian(record))[0]
                              - reference.labels.energy)
            for name, record in records.items()}


def analyse(predictor: Predictor, path: Path, energies: bool) -> dict:
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
    fit, electrostatic = electrostatic_fit(error, madelung, charges, reference.numbers)
    error_waves, waves = longest_wave_fit(error, fractional, reference.numbers)
    longest = int(np.argmax([found["amplitude"] for found in error_waves.values()]))
    difference = replace(predicted, H_onsite=predicted.H_onsite - reference.H_onsite,
                         H_pair=predicted.H_pair - pairs_in_layout(reference, predicted))
    atom_levels, shell_levels = orbital_atoms(reference), orbital_shells(reference)
    potential = best_levels(difference, atom_levels)
    left = levels_removed(difference, potential, atom_levels)
    shells = best_levels(difference, shell_levels)
    shells_left = levels_removed(difference, shells, shell_levels)
    return {
        "atoms": int(reference.n_atoms),
        "cell_lengths_angstrom": np.linalg.norm(reference.cell, axis=1).round(3).tolist(),
        "target_dv_spread": float(target.std()),
        "model_dv_spread": float(model.std()),
        "error_dv_spread": float(error.std()),
        "error_dv_mae": float(np.abs(error - error.mean()).mean()),
        "longest_wave_of_error": error_waves,
        "longest_wave_of_target": longest_wave_fit(target, fractional, reference.numbers)[0],
        "error_fit_on_madelung": fit,
        "longest_wave_of_madelung_potential": longest_wave_fit(1e3 * madelung, fractional,
                                                               reference.numbers)[0],
        "best_atom_potential": {
            "spread": float(potential.std()),
            "longest_wave": longest_wave_fit(potential, fractional, reference.numbers)[0],
            "mean_abs_error_onsite_before_after": [1e3 * float(np.abs(a.H_onsite).mean())
                                                   for a in (difference, left)],
            "mean_abs_error_pairs_before_after": [1e3 * float(np.abs(a.H_pair).mean())
                                                  for a in (difference, left)],
        },
        "best_shell_potential": {
            "mean_abs_error_onsite_before_after": [1e3 * float(np.abs(a.H_onsite).mean())
                                                   for a in (difference, shells_left)],
            "mean_abs_error_pairs_before_after": [1e3 * float(np.abs(a.H_pair).mean())
                                                  for a in (difference, shells_left)],
        },
        **({"kohn_sham_error_meV_per_atom": energy_errors(
            reference, predicted, {"madelung_fit": (electrostatic, atom_levels),
                                   f"wave_along_{'abc'[longest]}": (waves[longest], atom_levels),
                                   "best_atom_potential": (potential, atom_levels),
                                   "best_shell_potential": (shells, shell_levels)})}
           if energies else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+", help="GPAW records with H0 (.nc)")
    parser.add_argument("--model", type=Path, required=True, help="correction model folder")
    parser.add_argument("--energies", action="store_true", help="also the Kohn-Sham energy "
                        "errors of the model's H with and without the fitted parts")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    predictor = Predictor.load(args.model)
    result = {"machine": platform.platform(), "model": str(args.model), "records": {}}
    for path in args.records:
        found = result["records"][str(path)] = analyse(predictor, path, args.energies)
        best = found["best_atom_potential"]
        waves = ", ".join(f"{axis} {fit['amplitude']:.0f} ({fit['spread_left']:.0f} left)"
                          for axis, fit in found["longest_wave_of_error"].items())
        print(f"{path.stem}: {found['atoms']} atoms, target dv spread "
              f"{found['target_dv_spread']:.0f}, error dv spread {found['error_dv_spread']:.0f}; "
              f"longest wave of the error per axis: {waves} meV; after a fit on the Madelung "
              f"potential and charge {found['error_fit_on_madelung']['spread_left']:.0f} left; "
              f"best per-atom potential: spread {best['spread']:.0f}, mean |error| on-site "
              "{:.2f} -> {:.2f}, pairs {:.3f} -> {:.3f}; per shell: on-site -> {:.2f}, pairs -> "
              "{:.3f}".format(*best["mean_abs_error_onsite_before_after"],
                              *best["mean_abs_error_pairs_before_after"],
                              found["best_shell_potential"]["mean_abs_error_onsite_before_after"][1],
                              found["best_shell_potential"]["mean_abs_error_pairs_before_after"][1]),
              flush=True)
    write_results(result, args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
