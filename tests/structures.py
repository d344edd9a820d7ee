"""Test structures (Å) and the GPAW settings of their reference records, and repository paths.

Imported by the tests as `tests.structures`; the fixtures that compute GPAW records from
them live in conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk, molecule, mx2
from ase.spacegroup import crystal

from mlh.gpaw.settings import GPAWSettings

REPOSITORY = Path(__file__).resolve().parents[1]
EXAMPLES = REPOSITORY / "examples"
WSE2_MODEL = EXAMPLES / "models" / "wse2_vacancies"
WSE2_CORRECTION_MODEL = EXAMPLES / "models" / "wse2_vacancies_correction"


def water() -> Atoms:
    atoms = molecule("H2O", vacuum=3.5)
    atoms.rattle(0.02, seed=3)
    return atoms


def wse2_primitive(rattle: float = 0.02, seed: int = 4) -> Atoms:
    """WSe2 primitive cell (a = 3.32 Å, 4 Å vacuum, z non-periodic), rattled (Å)."""
    atoms = mx2("WSe2", a=3.32, thickness=3.2, vacuum=4.0)
    atoms.pbc = (True, True, False)
    atoms.rattle(rattle, seed=seed)
    return atoms


def quartz() -> Atoms:
    """alpha-quartz (P3_1 21), 9 atoms, Si-O 1.60-1.61 Å, slightly rattled."""
    atoms = crystal(["Si", "O"], basis=[(0.4697, 0, 1 / 3), (0.4135, 0.2669, 0.2142)],
                    spacegroup=152, cellpar=[4.916, 4.916, 5.405, 90, 90, 120])
    atoms.rattle(0.02, seed=5)
    return atoms


def silicon() -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.rattle(0.05, seed=6)
    return atoms


STRUCTURES = {
    "water": (water, GPAWSettings()),
    "wse2": (wse2_primitive, GPAWSettings(setups={"W": "6"}, kpts=(3, 3, 1))),
    "quartz": (quartz, GPAWSettings(kpts=(1, 1, 1), forces=False)),
    "silicon": (silicon, GPAWSettings(kpts=(3, 3, 3), forces=False)),
}



def rotate_structure(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    """Rotate positions and cell (r -> rotation @ r) about the cell centre."""
    rotated = atoms.copy()
    centre = atoms.cell.sum(axis=0) / 2 if not atoms.pbc.any() else np.zeros(3)
    rotated.positions = (atoms.positions - centre) @ rotation.T + centre
    if atoms.pbc.any():
        rotated.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    return rotated
