"""Defect formation energies (seed 003, eq. 1) as labelled xarray Datasets.

For a neutral defect made from a host supercell by removing n_i > 0 (or adding n_i < 0)
atoms of element i,

    E_f = E(defect) - E(host) + sum_i n_i (E_i + mu_i),

with E(defect), E(host) the total energies of the relaxed supercells, E_i the energy per
atom of element i in its reference phase (elemental solid or molecule; from reference
calculations or given) and mu_i the chemical potential relative to it (mu_i = 0: i-rich
conditions). Energies in eV. The Dataset has one entry per defect (dimension `defect`)
and per exchanged element (dimension `element`), `units` and `long_name` on every
variable and provenance attributes (write it atomically with mlh.record.io.write_dataset).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms

from mlh import __version__ as mlh_version
from mlh.errors import MLHError
from mlh.record.io import labelled_variable as _variable

__all__ = [
    "FORMULA", "DefectEnergy", "exchanged_atoms", "reference_energy_per_atom",
    "formation_energies",
]

FORMULA = "E_f = E(defect) - E(host) + sum_i n_i (E_i + mu_i)"


@dataclass(frozen=True)
class DefectEnergy:
    """One relaxed defect supercell.

    Attributes:
        name: label of the defect (e.g. "V_Se").
        energy: E(defect), total energy of the relaxed supercell (eV).
        exchanged: n_i per element symbol: atoms removed from the host (> 0) or added (< 0).
        attrs: optional per-defect notes (str/int/float), stored as `<name>_<key>` attrs.
    """

    name: str
    energy: float
    exchanged: Mapping[str, int]
    attrs: Mapping[str, Any] = field(default_factory=dict)


def exchanged_atoms(host: Atoms, defect: Atoms) -> dict[str, int]:
    """n_i per element: atoms of the host minus atoms of the defect supercell (non-zero only).

    Raises:
        MLHError: the two structures have different cells (not the same supercell).
    """
    if not np.allclose(host.cell.array, defect.cell.array, atol=1e-6):
        raise MLHError("the host and the defect supercell have different cells")
    counts = Counter(host.get_chemical_symbols())
    counts.subtract(defect.get_chemical_symbols())
    return {symbol: int(n) for symbol, n in sorted(counts.items()) if n}


def reference_energy_per_atom(atoms: Atoms, calculator) -> float:
    """E_i: energy per atom (eV) of an elemental reference structure with an ASE calculator.

    Raises:
        MLHError: a structure of more than one element.
    """
    if len(set(atoms.get_chemical_symbols())) != 1:
        raise MLHError(f"a reference phase must be elemental, got {atoms.get_chemical_formula()}")
    atoms = atoms.copy()
    atoms.calc = calculator
    return float(atoms.get_potential_energy()) / len(atoms)


def formation_energies(
    host_energy: float,
    defects: Sequence[DefectEnergy],
    reference_energies: Mapping[str, float],
    chemical_potentials: Mapping[str, float] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Formation energies of defects of one host supercell.

    Args:
        host_energy: E(host) (eV).
        defects: the defects, each with its energy and exchanged atoms n_i.
        reference_energies: E_i (eV per atom) for every exchanged element.
        chemical_potentials: mu_i (eV per atom); elements not given get 0.
        attrs: provenance (str/int/float values), stored with a `provenance_` prefix.

    Returns:
        Dataset with formation_energy, defect_energy (defect), host_energy,
        exchanged_atoms (defect, element), reference_energy and chemical_potential
        (element).

    Raises:
        MLHError: no defects, repeated names, non-finite energies, or an exchanged element
            without a reference energy.
    """
    chemical_potentials = dict(chemical_potentials or {})
    if not defects:
        raise MLHError("no defects given")
    names = [d.name for d in defects]
    if len(set(names)) != len(names):
        raise MLHError(f"defect names must be distinct, got {names}")
    elements = sorted({symbol for d in defects for symbol in d.exchanged})
    missing = [e for e in elements if e not in reference_energies]
    if missing:
        raise MLHError(f"no reference energy E_i for {', '.join(missing)}: give the energy per "
                       f"atom of its reference phase")
    E_i = np.array([float(reference_energies[e]) for e in elements])
    mu_i = np.array([float(chemical_potentials.get(e, 0.0)) for e in elements])
    n_di = np.array([[int(d.exchanged.get(e, 0)) for e in elements] for d in defects],
                    dtype=np.int64).reshape(len(defects), len(elements))
    E_d = np.array([float(d.energy) for d in defects])
    values = np.concatenate([[host_energy], E_d, E_i, mu_i])
    if not np.isfinite(values).all():
        raise MLHError("the host, defect, reference energies or chemical potentials are not finite")
    E_f = E_d - float(host_energy) + n_di @ (E_i + mu_i)

    dataset_attrs: dict[str, Any] = {
        "formula": FORMULA,
        "creation_library": "mlh",
        "creation_library_version": mlh_version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    dataset_attrs.update({f"provenance_{k}": v for k, v in (attrs or {}).items()})
    for defect in defects:
        dataset_attrs.update({f"{defect.name}_{k}": v for k, v in defect.attrs.items()})
    return xr.Dataset(
        {
            "formation_energy": _variable("defect", E_f, "defect formation energy E_f", "eV"),
            "defect_energy": _variable("defect", E_d, "total energy of the defect supercell",
                                       "eV"),
            "host_energy": _variable((), float(host_energy), "total energy of the host "
                                     "supercell", "eV"),
            "exchanged_atoms": _variable(("defect", "element"), n_di, "atoms removed from the "
                                         "host (n_i > 0) or added (n_i < 0)", "1"),
            "reference_energy": _variable("element", E_i, "energy per atom of the reference "
                                          "phase E_i", "eV"),
            "chemical_potential": _variable("element", mu_i, "chemical potential mu_i relative "
                                            "to the reference phase", "eV"),
        },
        coords={"defect": names, "element": elements},
        attrs=dataset_attrs,
    )
