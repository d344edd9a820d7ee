"""How much a record's SCF H depends on the k-point grid of its SCF.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kpoint_sampling.py \
        example_data/sio2_train/sio2_train-0010.nc --grids 1x1x1 1x1x2 1x1x3 --reference 1x1x4 \
        --out benchmarks/results/kpoint_sampling_sio2.json

For each GPAW record, GPAW's SCF is rerun on its structure with each --grids k grid and with
--reference (the settings file's other settings), and each H is compared with the
reference grid's: H MAE (all / on-site / off-site) and eigenvalue MAE within E_F +- 5 eV,
raw and after the best c·S (`correction_ab.evaluation`). A model trained on records of one
grid and tested on cells of another learns targets that differ by this much. Records of
each grid are kept in --workdir, so a rerun resumes. Units: meV.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from mlh.gpaw.record_settings import record_atoms
from mlh.gpaw.reference import reference_record
from mlh.gpaw.settings import load_settings
from mlh.grids import parse_grid
from mlh.record.io import read_record, write_record

from _results import write_results
from correction_ab import evaluation

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, nargs="+", help="GPAW records (.nc)")
    parser.add_argument("--grids", nargs="+", default=["1x1x1", "1x1x2", "1x1x3"])
    parser.add_argument("--reference", default="1x1x4", help="the grid compared against")
    parser.add_argument("--settings", type=Path, default=ROOT / "examples/sio2_gpaw.yaml")
    parser.add_argument("--workdir", type=Path, default=ROOT / "out/kpoint_sampling")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    result = {"machine": platform.platform(), "settings": str(args.settings),
              "reference_grid": args.reference, "records": {}}
    for path in args.records:
        atoms = record_atoms(read_record(path))
        records, seconds = {}, {}
        for name in dict.fromkeys([*args.grids, args.reference]):
            cached = args.workdir / f"{path.stem}_k{name}.nc"
            if not cached.exists():
                begin = time.perf_counter()
                settings = load_settings(args.settings, kpts=parse_grid(name, "--grids"))
                write_record(reference_record(atoms, settings), cached)
                seconds[name] = round(time.perf_counter() - begin, 1)
            records[name] = read_record(cached)
        reference = records[args.reference]
        result["records"][path.stem] = {
            "atoms": len(atoms), "scf_seconds": seconds,
            "versus_reference": {name: evaluation([(path.stem, records[name], reference)], 5.0)
                                 for name in args.grids if name != args.reference}}
        for name, errors in result["records"][path.stem]["versus_reference"].items():
            aligned = errors["aligned"]
            print(f"{path.stem} {name} vs {args.reference}: on-site {aligned['onsite_mae']:.3f}, "
                  f"off-site {aligned['offsite_mae']:.4f}, eigenvalues "
                  f"{aligned['eigenvalue_mae_window']:.3f} meV (c-aligned)", flush=True)
    write_results(result, args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
