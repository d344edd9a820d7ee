"""A better baseline than H0: GPAW's first SCF step from its initial density, linearly mixed.

    .venv/bin/python benchmarks/first_step_baseline.py --share 0.45 --kpoint-density 1 \
        -o example_data/sio2_train_b045 example_data/sio2_train

For every record with H0 (`mlh generate --baseline`): install the occupied states of H0 in
GPAW (the record's SCF k grid), take the potential of their density n0, build H1 = H[n0]
on the record's alias-free k grid (the same matrix calculator as H and H0) and write a copy
of the record whose baseline is

    B = H0 + s (H1 - H0),

the Hamiltonian after one linear-mixing step of share s (the record's provenance says so).
A correction model trained on such records learns H - B (benchmarks/correction_ab.py
--data OUT). H0 lacks the charge transfer of the SCF; one step adds most of it, with the
Hartree potential of the whole cell (not only of a neighbourhood). s ~ 1/eps_inf damps the
step's overshoot (SiO2: 0.45). Costs one diagonalisation, one potential and one more GPAW
set-up per record.

Also prints and writes, per record, the on-site and off-site MAE of H0 and of B for each
share of --scan against the record's SCF H (meV), and the seconds spent, to
benchmarks/results/first_step_baseline_<name>.json. Records already written are skipped
(the job resumes after a kill, keeping the rows of the results file); each file is written
whole or not at all.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from mlh.gpaw.record_settings import record_atoms, record_scf_kpts, settings_from_record
from mlh.gpaw.reference import bloch_matrices
from mlh.gpaw.settings import GPAWSettings
from mlh.gpaw.states import first_step_mix
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import read_record, record_files, write_record
from mlh.record.realspace import blocks_from_bloch, unfold_time_reversal
from physics.dft.functional import gpaw_calculation, install_density

from _results import load_previous, write_results


def first_step_blocks(record: HamiltonianRecord) -> tuple[np.ndarray, np.ndarray]:
    """(pair, on-site) values of H1 = H[n0] (eV) in the record's layout, n0 the density of
    the occupied states of its H0."""
    settings, atoms = settings_from_record(record), record_atoms(record)
    start = record.baseline_as_hamiltonian()
    dft = gpaw_calculation(atoms, settings, record_scf_kpts(record))
    install_density(dft, lambda k, spin: start.hamiltonian_k(k, spin).toarray(),
                    lambda k: record.overlap_k(k).toarray())
    grid = np.array([int(n) for n in record.provenance["realspace_kpts"].split("x")])
    on_grid = gpaw_calculation(atoms, settings, {"size": tuple(int(n) for n in grid), "gamma": True})
    H1_skMM, _, kpoints = bloch_matrices(on_grid, potential=dft.potential)
    pair, onsite, imaginary = blocks_from_bloch(
        unfold_time_reversal(H1_skMM, kpoints, grid), grid, record.pair_i, record.pair_j,
        record.pair_shift, record.orbital_counts)
    if imaginary > 1e-8:
        raise SystemExit(f"H1 of this record is not real ({imaginary:.1e}): the k grid aliases")
    return pair, onsite


def first_step_provenance(record: HamiltonianRecord, name: str, share: float,
                          kpoint_density: float) -> dict:
    """The provenance entries of a first-step baseline of `share` made from this record's
    H0, as `mlh generate --baseline --first-step-share` writes them. That takes n0 on the
    grid of `kpoint_density`; this script takes the record's SCF grid, which must be it."""
    settings = GPAWSettings(first_step_share=share, kpoint_density=kpoint_density)
    grid = settings.scf_kpts(record.cell, record.pbc)
    if grid != record_scf_kpts(record):
        raise SystemExit(f"{name}: its SCF grid {record_scf_kpts(record)} is not the grid {grid} "
                         f"of k-point density {kpoint_density}; give the density of its data set")
    return {"baseline": f"gpaw first SCF step from its initial density, linear mixing share {share}",
            **{key: value for key, value in settings.provenance().items()
               if key.startswith("baseline_first_step")}}


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return 1e3 * float(np.abs(a - b).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="records with H0 (files or folders)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder of the new records")
    parser.add_argument("--share", type=float, default=0.45, help="mixing share s of the written baseline")
    parser.add_argument("--kpoint-density", type=float, required=True,
                        help="k-points per reciprocal Å of the records' SCF (their GPAW settings)")
    parser.add_argument("--scan", default="0.3,0.4,0.45,0.5,0.6", help="shares whose errors are reported")
    parser.add_argument("--out", type=Path, default=None, help="results JSON")
    args = parser.parse_args()

    shares = [float(s) for s in args.scan.split(",")]
    out = args.out or Path(f"benchmarks/results/first_step_baseline_{args.output.name}.json")
    settings = {"share": args.share, "kpoint_density": args.kpoint_density, "scan": shares}
    result = {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
              "settings": settings, "units": "meV, s", "runs": load_previous(out, settings)}
    args.output.mkdir(parents=True, exist_ok=True)
    for path in record_files(args.inputs):
        target = args.output / path.name
        if target.exists():
            continue
        record = read_record(path)
        if record.H0_pair is None or not record.has_hamiltonian:
            raise SystemExit(f"{path}: the record needs H and H0 (mlh generate --baseline)")
        provenance = first_step_provenance(record, path.name, args.share, args.kpoint_density)
        start = time.perf_counter()
        H1_pair, H1_onsite = first_step_blocks(record)
        seconds = time.perf_counter() - start

        def mixed(share: float) -> tuple[np.ndarray, np.ndarray]:
            return (first_step_mix(record.H0_pair, H1_pair, share),
                    first_step_mix(record.H0_onsite, H1_onsite, share))

        B_pair, B_onsite = mixed(args.share)
        write_record(replace(record, H0_pair=B_pair, H0_onsite=B_onsite, provenance={
            **record.provenance, **provenance}), target)
        row = {"seconds": seconds, "atoms": int(record.n_atoms),
               "H0": [_mae(record.H0_onsite, record.H_onsite), _mae(record.H0_pair, record.H_pair)]}
        for share in shares:
            pair, onsite = mixed(share)
            row[f"s={share}"] = [_mae(onsite, record.H_onsite), _mae(pair, record.H_pair)]
        result["runs"][path.stem] = row
        write_results(result, out)
        print(path.stem, f"{seconds:.1f} s; on-site / off-site MAE H0 {row['H0'][0]:.1f} / "
              f"{row['H0'][1]:.2f}, B(s={args.share}) {_mae(B_onsite, record.H_onsite):.1f} / "
              f"{_mae(B_pair, record.H_pair):.2f} meV", flush=True)


if __name__ == "__main__":
    main()
