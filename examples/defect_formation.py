"""Defect formation energies (seed 003, eq. 1) from relaxations with the ML-Hamiltonian calculator.

    .venv/bin/python examples/defect_formation.py host.extxyz --defect v_se.extxyz \\
        --reference Se=-3.48 -o formation/

Relaxes the host supercell and each defect supercell (same cell, fixed) with
relax.calculator.MLHCalculator (--route dft, band, or scf: GPAW's own SCF started from the
model's density), then computes

    E_f = E(defect) - E(host) + sum_i n_i (E_i + mu_i)

with n_i the atoms removed (> 0) or added (< 0), found by comparing the compositions,
E_i the energy per atom of element i's reference phase (--reference EL=eV, e.g. from a
DFT calculation as in seed 003, or --reference-structure EL=FILE computed with the same
calculator after relaxation) and mu_i (--mu EL=eV, default 0). Writes per structure
NAME.traj, NAME.nc and NAME-relaxed.extxyz (see relax_structure.py) and OUT/formation.nc
(relax.formation.formation_energies), each atomically. A killed run, started again, keeps
the relaxations it finished and continues the one it was in. Bad input gives one line
"error: ..." on stderr and exit status 1; all files are checked before the model loads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlh.errors import MLHError
from relax import drivers

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "wse2_vacancies"


def element_values(items: list[str], option: str) -> dict[str, str]:
    """["Se=-3.5", ...] -> {"Se": "-3.5"}; MLHError for malformed or repeated entries."""
    values: dict[str, str] = {}
    for item in items:
        element, sep, value = item.partition("=")
        if not sep or not element or not value:
            raise MLHError(f"{option} takes ELEMENT=VALUE, got {item!r}")
        if element in values:
            raise MLHError(f"{option}: {element} given twice")
        values[element] = value
    return values


def numbers(values: dict[str, str], option: str) -> dict[str, float]:
    try:
        return {element: float(value) for element, value in values.items()}
    except ValueError as error:
        raise MLHError(f"{option}: {error}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host", type=Path, help="host supercell (ASE-readable, last frame)")
    parser.add_argument("--defect", type=Path, action="append", required=True,
                        help="defect supercell; repeat for several defects")
    parser.add_argument("--reference", action="append", default=[],
                        help="E_i as ELEMENT=eV per atom; repeat per element")
    parser.add_argument("--reference-structure", action="append", default=[],
                        help="ELEMENT=FILE: E_i from relaxing this elemental structure")
    parser.add_argument("--mu", action="append", default=[],
                        help="chemical potential as ELEMENT=eV (default 0)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    drivers.add_calculator_arguments(parser, DEFAULT_MODEL)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    from mlh.record.io import write_dataset
    from relax.formation import DefectEnergy, exchanged_atoms, formation_energies

    host = drivers.read_frame(args.host)
    defects = {path.stem: drivers.read_frame(path) for path in args.defect}
    if len(defects) != len(args.defect) or args.host.stem in defects:
        raise MLHError("the host and the defect files need distinct file name stems")
    exchanged = {name: exchanged_atoms(host, atoms) for name, atoms in defects.items()}
    references = numbers(element_values(args.reference, "--reference"), "--reference")
    structures = {element: drivers.read_frame(path) for element, path in
                  element_values(args.reference_structure, "--reference-structure").items()}
    mu = numbers(element_values(args.mu, "--mu"), "--mu")
    both = sorted(set(references) & set(structures))
    if both:
        raise MLHError(f"{', '.join(both)}: give either --reference or --reference-structure")
    needed = sorted({e for n in exchanged.values() for e in n} - set(references) - set(structures))
    if needed:
        raise MLHError(f"no reference energy for {', '.join(needed)}: add --reference "
                       f"ELEMENT=eV or --reference-structure ELEMENT=FILE")
    drivers.parse_kpts(args.kpts)

    calculator = drivers.make_calculator(args)
    attrs = drivers.calculator_attrs(args)
    output = args.output
    for element, atoms in structures.items():
        result = drivers.relax_and_write(atoms, calculator, args, output, f"reference-{element}",
                                 {**attrs, "structure": str(args.reference_structure)})
        references[element] = float(result.energies[-1]) / len(atoms)
    host_result = drivers.relax_and_write(host, calculator, args, output, args.host.stem,
                                  {**attrs, "structure": str(args.host)})
    energies = []
    for path, (name, atoms) in zip(args.defect, defects.items()):
        result = drivers.relax_and_write(atoms, calculator, args, output, name,
                                 {**attrs, "structure": str(path)})
        energies.append(DefectEnergy(name, float(result.energies[-1]), exchanged[name],
                                     attrs={"converged": int(result.converged),
                                            "steps": result.steps, "structure": str(path)}))
    dataset = formation_energies(
        float(host_result.energies[-1]), energies, references, mu,
        attrs={**attrs, "host": str(args.host), "host_converged": int(host_result.converged),
               "fmax_eV_per_angstrom": args.fmax})
    write_dataset(dataset, output / "formation.nc")
    for name, value in zip(dataset.defect.values, dataset.formation_energy.values):
        print(f"E_f({name}) = {value:.4f} eV")


def main(argv: list[str] | None = None) -> int:
    return drivers.run_command(run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
