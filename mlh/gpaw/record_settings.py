"""What a GPAW-made record says about its calculation: its GPAWSettings, SCF k-point grid,
Fermi-Dirac width (eV), and its structure as ASE Atoms (Å)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from mlh.errors import MLHError
from mlh.gpaw.settings import FIRST_STEP_KEYS, GPAWSettings, settings_from_provenance
from mlh.grids import parse_grid
from mlh.record.hamiltonian import HamiltonianRecord

__all__ = [
    "DEFAULT_WIDTH", "record_smearing_width", "settings_from_record", "settings_from_record_provenance",
    "record_scf_kpts", "record_atoms", "structure_atoms",
]

DEFAULT_WIDTH = 0.01
"""Fermi-Dirac width (eV) when neither the caller nor the record says otherwise (GPAW data)."""


def record_smearing_width(record: HamiltonianRecord) -> float:
    """The Fermi-Dirac width (eV) in the record's provenance ("fermi-dirac 0.01 eV"), else 0.01."""
    return _smearing_width(record.provenance)


def _smearing_width(provenance: dict[str, Any]) -> float:
    text = str(provenance.get("smearing", "")).split()
    if len(text) == 3 and text[0] == "fermi-dirac" and text[2] == "eV":
        try:
            width = float(text[1])
        except ValueError:
            return DEFAULT_WIDTH
        return width if width > 0 else DEFAULT_WIDTH
    return DEFAULT_WIDTH


def settings_from_record(record: HamiltonianRecord) -> GPAWSettings:
    """The GPAWSettings a GPAW-made record was computed with (xc, basis, setups, h, width,
    spin polarisation, a first-step baseline's share and k-point density), read from its
    provenance.

    Raises:
        MLHError: provenance without the GPAW settings.
    """
    return settings_from_record_provenance(record.provenance)


def settings_from_record_provenance(provenance: dict[str, Any]) -> GPAWSettings:
    """The GPAWSettings of a record with this provenance (see settings_from_record)."""
    core = settings_from_provenance(provenance)
    try:
        h = float(provenance.get("grid_spacing_angstrom", GPAWSettings().h))
        spinpol = bool(int(provenance.get("spinpol", 0)))
        first_step = {field: float(provenance[key]) for field, key in FIRST_STEP_KEYS.items()
                      if key in provenance}
    except (TypeError, ValueError) as err:
        raise MLHError(f"record provenance has a bad grid spacing, spinpol or first-step "
                       f"baseline ({err})") from None
    return GPAWSettings(**core, h=h, spinpol=spinpol, smearing_width=_smearing_width(provenance),
                        **first_step)


def record_scf_kpts(record: HamiltonianRecord) -> tuple[int, int, int]:
    """The record's SCF Monkhorst-Pack grid (provenance "scf_kpts", e.g. "3x3x1"); Γ if absent."""
    return parse_grid(record.provenance.get("scf_kpts", "1x1x1"), "record provenance scf_kpts")  # type: ignore[return-value]


def record_atoms(record: HamiltonianRecord) -> Atoms:
    """The record's structure as ASE Atoms (ghost atoms marked in atoms.arrays["ghost"])."""
    return structure_atoms(record.numbers, record.positions, record.cell, record.pbc, record.ghost)


def structure_atoms(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
                    ghost: np.ndarray) -> Atoms:
    """ASE Atoms of a structure (positions, cell in Å), ghost atoms in atoms.arrays["ghost"]."""
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    if np.any(ghost):
        atoms.arrays["ghost"] = np.asarray(ghost, bool).copy()
    return atoms
