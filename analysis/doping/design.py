"""Design variables of a doped, defective structure, from its composition and geometry.

The controllable quantities of a doping study (seed 001, section 2.2.2):

- dopant ratio: number of dopant atoms over number of host atoms (e.g. Ni:Hf, Nb:W);
- vacancy count, rate (% of the sites the pristine material has) and areal density
  (cm^-2): sites = pristine ratio x number of lattice atoms (e.g. 2 Se per W or Nb site
  of WSe2), so strain does not count as vacancies;
- mass density (g/cm^3) of the whole cell, or of a slab between two heights along the
  layer normal (atoms inside it, volume = area x thickness).

Ghost atoms (vacancies kept as basis functions, `atoms.arrays["ghost"]`) count as absent.
Lengths in Å. Every quantity that cannot be computed for a structure raises MLHError
naming the reason; nothing is silently NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from analysis.hole import ANGSTROM2_PER_CM2, cell_area
from mlh.errors import MLHError

__all__ = ["DesignSpec", "DESIGN_UNITS", "design_variables", "pristine_ratio"]

GRAMS_PER_AMU = 1.66053906660e-24
CM3_PER_ANGSTROM3 = 1e-24

DESIGN_UNITS = {
    "dopant_ratio": ("dopant atoms per host atom", "1"),
    "vacancies": ("vacancies relative to the pristine material", "1"),
    "vacancy_rate": ("vacancies per pristine site", "%"),
    "vacancy_per_area": ("vacancies per layer area", "cm^-2"),
    "mass_density": ("mass density of the chosen region", "g/cm^3"),
}
"""Long name and units of every computed design variable."""


@dataclass(frozen=True)
class DesignSpec:
    """Which design variables to compute, and how.

    Attributes:
        dopant, host: chemical symbols for dopant_ratio = n(dopant) / n(host); None: skip.
        vacancy_species: symbol of the species whose vacancies count; None: skip.
        lattice_species: symbols whose atoms each carry `sites_per_lattice_atom` sites of
            the vacancy species (for WSe2 with Nb on W sites: W and Nb).
        sites_per_lattice_atom: vacancy-species atoms per lattice atom in the pristine
            material (2 for WSe2; see `pristine_ratio`).
        density_region: None (skip), "cell", or (lower, upper) heights in Å along the
            area axis (Cartesian component of positions, wrapped into the cell).
        area_axis: cell axis normal to the layer; None: the one non-periodic axis.
    """

    dopant: str | None = None
    host: str | None = None
    vacancy_species: str | None = None
    lattice_species: tuple[str, ...] = ()
    sites_per_lattice_atom: float | None = None
    density_region: str | tuple[float, float] | None = "cell"
    area_axis: int | None = None

    def __post_init__(self) -> None:
        symbols = [self.dopant, self.host, self.vacancy_species, *self.lattice_species]
        unknown = [s for s in symbols if s is not None and (s not in atomic_numbers or s == "X")]
        if unknown:
            raise MLHError(f"unknown chemical symbols {unknown} in the design variables")
        if (self.dopant is None) != (self.host is None):
            raise MLHError("the dopant ratio needs both a dopant and a host species")
        if self.vacancy_species is not None:
            if not self.lattice_species:
                raise MLHError(f"vacancies of {self.vacancy_species} need the lattice species "
                               "that carry its sites (e.g. W,Nb for Se in WSe2)")
            if self.sites_per_lattice_atom is None or not self.sites_per_lattice_atom > 0:
                raise MLHError(f"vacancies of {self.vacancy_species} need a positive number of "
                               "sites per lattice atom (or a pristine reference structure)")
        region = self.density_region
        if isinstance(region, str) and region != "cell":
            raise MLHError(f"density region {region!r}: give 'cell' or two heights LOWER,UPPER (Å)")
        if isinstance(region, tuple) and not (len(region) == 2 and region[0] < region[1]):
            raise MLHError(f"density region {region}: LOWER must be below UPPER")

    @property
    def names(self) -> list[str]:
        """Names of the variables this spec computes, in output order."""
        names = ["dopant_ratio"] if self.dopant else []
        if self.vacancy_species:
            names += ["vacancies", "vacancy_rate", "vacancy_per_area"]
        return names + (["mass_density"] if self.density_region is not None else [])


def pristine_ratio(reference: Atoms, vacancy_species: str, lattice_species: Sequence[str]) -> float:
    """Atoms of `vacancy_species` per atom of `lattice_species` in a pristine structure."""
    symbols = np.array(reference.get_chemical_symbols())
    lattice = int(np.isin(symbols, list(lattice_species)).sum())
    if lattice == 0:
        raise MLHError(f"the pristine reference has no {','.join(lattice_species)} atoms")
    count = int((symbols == vacancy_species).sum())
    if count == 0:
        raise MLHError(f"the pristine reference has no {vacancy_species} atoms")
    return count / lattice


def _area_axis(atoms: Atoms, spec: DesignSpec) -> int:
    if spec.area_axis is not None:
        return spec.area_axis
    open_axes = np.flatnonzero(~atoms.pbc).tolist()
    if len(open_axes) != 1:
        raise MLHError("per-area and slab quantities need a layer: the structure has "
                       f"{len(open_axes)} non-periodic axes; give the area axis")
    return open_axes[0]


def _real_atoms(atoms: Atoms) -> np.ndarray:
    """Mask of the atoms that are not ghosts."""
    return ~np.asarray(atoms.arrays.get("ghost", np.zeros(len(atoms), dtype=bool)), dtype=bool)


def _mass_density(atoms: Atoms, spec: DesignSpec) -> float:
    masses = atomic_masses[atoms.numbers] * _real_atoms(atoms)
    if spec.density_region == "cell":
        volume = abs(float(np.linalg.det(atoms.cell.array)))
        if not volume > 0:
            raise MLHError("the cell has no volume, so its mass density is undefined")
        inside = np.ones(len(atoms), dtype=bool)
    else:
        lower, upper = spec.density_region
        axis = _area_axis(atoms, spec)
        normal = np.cross(*(atoms.cell.array[i] for i in range(3) if i != axis))
        normal /= np.linalg.norm(normal)
        height = atoms.get_positions(wrap=True) @ normal
        inside = (height >= lower) & (height < upper)
        if not inside.any():
            raise MLHError(f"no atoms lie between heights {lower} and {upper} Å")
        volume = cell_area(atoms.cell.array, axis) * (upper - lower)
    return float(masses[inside].sum() * GRAMS_PER_AMU / (volume * CM3_PER_ANGSTROM3))


def design_variables(atoms: Atoms, spec: DesignSpec) -> dict[str, float]:
    """The design variables `spec` asks for (see DESIGN_UNITS for names and units).

    Raises:
        MLHError: a host species absent from the structure, no lattice atoms, no layer
            for per-area values, an empty density region.
    """
    symbols = np.array(atoms.get_chemical_symbols())[_real_atoms(atoms)]
    values: dict[str, float] = {}
    if spec.dopant:
        host = int((symbols == spec.host).sum())
        if host == 0:
            raise MLHError(f"the dopant ratio {spec.dopant}:{spec.host} is undefined: the "
                           f"structure has no {spec.host} atoms")
        values["dopant_ratio"] = float((symbols == spec.dopant).sum()) / host
    if spec.vacancy_species:
        lattice = int(np.isin(symbols, list(spec.lattice_species)).sum())
        if lattice == 0:
            raise MLHError(f"vacancies of {spec.vacancy_species} are undefined: the structure "
                           f"has no {','.join(spec.lattice_species)} atoms")
        sites = spec.sites_per_lattice_atom * lattice
        vacancies = sites - float((symbols == spec.vacancy_species).sum())
        area = cell_area(atoms.cell.array, _area_axis(atoms, spec))
        values["vacancies"] = vacancies
        values["vacancy_rate"] = 100.0 * vacancies / sites
        values["vacancy_per_area"] = vacancies / area * ANGSTROM2_PER_CM2
    if spec.density_region is not None:
        values["mass_density"] = _mass_density(atoms, spec)
    return values
