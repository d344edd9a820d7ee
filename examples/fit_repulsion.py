"""Fit the band route's pair repulsion of a model to GPAW records and write MODEL/repulsion.json.

    .venv/bin/python examples/fit_repulsion.py MODEL RECORD_OR_FOLDER... [-o FILE]

E_rep is fitted by weighted least squares to E_DFT - A_band[H_model] and F_DFT - F_band
(physics.band.repulsion_fit.fit_repulsion_to_records); the fit's residuals are printed (meV/atom,
meV/Å). Bad input: one `error:` line, exit 1, nothing written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from relax.drivers import run_command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path, help="model folder")
    parser.add_argument("records", type=Path, nargs="+", help="GPAW records (.nc) or folders")
    parser.add_argument("-o", "--output", type=Path, help="default MODEL/repulsion.json")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    from mlh.model.predictor import Predictor
    from mlh.record.io import read_record
    from physics.band.repulsion import write_repulsion
    from physics.band.repulsion_fit import fit_repulsion_to_records

    files = sorted(f for path in args.records
                   for f in (path.glob("*.nc") if path.is_dir() else [path]))
    predictor = Predictor.load(args.model)
    records = [read_record(f) for f in files]
    repulsion, report = fit_repulsion_to_records(predictor, records, names=[f.stem for f in files])
    output = args.output or args.model / "repulsion.json"
    write_repulsion(repulsion, output)
    print(f"{len(files)} records; fit residuals (RMS): {report.as_dict()}")
    print(f"written to {output}")


def main(argv: list[str] | None = None) -> int:
    return run_command(run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
