"""Write the WSe2 transport devices of the transport example as one extxyz file (Å).

Each device is a pristine orthogonal WSe2 monolayer (a = 3.32 Å, a x sqrt(3) a cells of 6
atoms) repeated LENGTH times along x (the transport axis) and WIDTH times along y, with
Se atoms removed in its middle; its first and last cells are pristine, so electrodes can
be cut from the device's own ends (`mlh-analyze transport --electrode-cells LENGTH`).

    small   16 x 1, one Se vacancy (periodic along y: a line of vacancies 5.75 Å apart;
            small enough for a GPAW reference, ~95 atoms)
    sheet   16 x 2, two Se vacancies at scattered sites
    line    16 x 2, a line of two Se vacancies across the whole width (a cut)

Usage: python examples/transport_devices.py OUT.extxyz [--only small]
"""

from __future__ import annotations

import argparse

import numpy as np
from ase import Atoms
from ase.build import make_supercell, mx2
from ase.io import write

LENGTH = 16


def pristine(length: int, width: int) -> Atoms:
    """Orthogonal WSe2 sheet, `length` x `width` cells, x and y periodic, 5 Å vacuum."""
    primitive = mx2("WSe2", a=3.32, thickness=3.2, vacuum=5.0)
    orthogonal = make_supercell(primitive, [[1, 0, 0], [1, 2, 0], [0, 0, 1]])
    atoms = orthogonal.repeat((length, width, 1))
    atoms.pbc = (True, True, False)
    return atoms


def remove_selenium(atoms: Atoms, sites: list[tuple[float, float, bool]]) -> Atoms:
    """Remove the Se atom nearest to each (x fraction, y fraction, top layer) site."""
    cell = atoms.cell.lengths()
    selenium = np.flatnonzero(atoms.numbers == 34)
    middle = atoms.positions[:, 2].mean()
    chosen = []
    for fx, fy, top in sites:
        candidates = selenium[(atoms.positions[selenium, 2] > middle) == top]
        target = np.array([fx * cell[0], fy * cell[1]])
        chosen.append(candidates[np.argmin(np.linalg.norm(
            atoms.positions[candidates, :2] - target, axis=1))])
    del atoms[sorted(set(chosen))]
    return atoms


def devices() -> dict[str, Atoms]:
    """The example devices by name."""
    return {
        "small": remove_selenium(pristine(LENGTH, 1), [(0.5, 0.5, True)]),
        "sheet": remove_selenium(pristine(LENGTH, 2), [(0.42, 0.25, True), (0.58, 0.75, False)]),
        "line": remove_selenium(pristine(LENGTH, 2), [(0.5, y, True) for y in (0.25, 0.75)]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output")
    parser.add_argument("--only", help="write only this device")
    args = parser.parse_args()
    frames = []
    for name, atoms in devices().items():
        if args.only in (None, name):
            atoms.info["name"] = name
            frames.append(atoms)
    write(args.output, frames, format="extxyz")


if __name__ == "__main__":
    main()
