"""Relax a structure with the ML-Hamiltonian calculator; write its trajectory and results.

    .venv/bin/python examples/relax_structure.py cell.extxyz -o relaxed/
    .venv/bin/python examples/relax_structure.py cell.extxyz -o relaxed/ --route band --kpts 2x2x1
    .venv/bin/python examples/relax_structure.py cell.extxyz -o relaxed/ --route scf   # exact GPAW

The last frame of STRUCTURE (any ASE-readable file) is relaxed at fixed cell with
relax.calculator.MLHCalculator (default: the bundled WSe2 model on the "dft" route; "scf"
runs GPAW's own SCF from the model's density, so its results are GPAW's) until
every force is below --fmax; a killed run, started again, continues from its last step,
and a finished one (same start structure, model, route, criterion) is not redone.
Writes OUT/relax.traj (every step),
OUT/relaxation.nc (energies per step, relaxed positions, forces; units and provenance in
the attributes) and OUT/relaxed.extxyz, each atomically. Bad input (missing or
unreadable file, unknown species, atoms closer than 0.5 Å, ...) gives one line
"error: ..." on stderr and exit status 1; input files are checked before the model loads.
Units: eV, Å.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from relax.drivers import (
    add_calculator_arguments,
    calculator_attrs,
    make_calculator,
    parse_kpts,
    read_frame,
    relax_and_write,
    run_command,
)

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "wse2_vacancies"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("structure", type=Path, help="ASE-readable file (last frame is used)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    add_calculator_arguments(parser, DEFAULT_MODEL)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    atoms = read_frame(args.structure)
    parse_kpts(args.kpts)
    calculator = make_calculator(args)
    relax_and_write(atoms, calculator, args, args.output, "relax",
                    {**calculator_attrs(args), "structure": str(args.structure)})


def main(argv: list[str] | None = None) -> int:
    return run_command(run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
