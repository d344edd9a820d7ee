"""Design variables of doped, defective layers (analysis.doping.design)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import mx2
from ase.data import atomic_masses

from analysis.doping.design import DesignSpec, design_variables, pristine_ratio
from mlh.errors import MLHError
from mlh.gpaw.structures import wse2_with_vacancies

WSE2_SPEC = DesignSpec(dopant="Nb", host="W", vacancy_species="Se", lattice_species=("W", "Nb"),
                       sites_per_lattice_atom=2.0)


def layer(n_dopants: int, n_vacancies: int, ghosts: bool = False):
    rng = np.random.default_rng(3)
    atoms = wse2_with_vacancies(rng, repeat=(4, 3), mean_vacancies=0.0, rattle=0.0)
    tungsten = np.flatnonzero(atoms.numbers == 74)
    atoms.symbols[tungsten[:n_dopants]] = "Nb"
    selenium = np.flatnonzero(atoms.numbers == 34)[:n_vacancies]
    if ghosts:
        atoms.arrays["ghost"] = np.isin(np.arange(len(atoms)), selenium)
    else:
        del atoms[selenium.tolist()]
    return atoms


@pytest.mark.parametrize("ghosts", [False, True])
def test_counts_rates_and_areal_density(ghosts):
    atoms = layer(n_dopants=3, n_vacancies=2, ghosts=ghosts)  # 24 metal sites, 48 Se sites
    values = design_variables(atoms, WSE2_SPEC)
    assert values["dopant_ratio"] == pytest.approx(3 / 21)
    assert values["vacancies"] == 2
    assert values["vacancy_rate"] == pytest.approx(100 * 2 / 48)
    area = np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1]))
    assert values["vacancy_per_area"] == pytest.approx(2 / area * 1e16)
    real = ~atoms.arrays.get("ghost", np.zeros(len(atoms), bool))
    mass = atomic_masses[atoms.numbers[real]].sum()
    grams_per_cm3 = mass * 1.66053906660e-24 / (atoms.cell.volume * 1e-24)
    assert values["mass_density"] == pytest.approx(grams_per_cm3)


def test_strain_is_not_counted_as_vacancies():
    atoms = layer(0, 0)
    atoms.set_cell(atoms.cell.array * [1.02, 0.98, 1.0], scale_atoms=True)
    assert design_variables(atoms, WSE2_SPEC)["vacancies"] == 0


def test_slab_density_counts_only_atoms_inside():
    atoms = layer(0, 0)
    centre = atoms.positions[:, 2].mean()
    lower, upper = centre - 3.245, centre + 3.245  # one layer of bulk WSe2 (c / 2 = 6.49 Å)
    spec = DesignSpec(density_region=(lower, upper))
    area = np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1]))
    expected = atomic_masses[atoms.numbers].sum() * 1.66053906660e-24 / (area * (upper - lower) * 1e-24)
    assert design_variables(atoms, spec)["mass_density"] == pytest.approx(expected)
    assert 9.0 < expected < 9.6  # bulk WSe2: 9.3 g/cm^3 (a = 3.32 Å here, 3.28 Å in bulk)


def test_pristine_ratio_of_wse2():
    assert pristine_ratio(mx2("WSe2"), "Se", ["W"]) == 2.0


@pytest.mark.parametrize("spec, atoms_fn, fragment", [
    (DesignSpec(dopant="Ni", host="Hf"), lambda: layer(0, 0), "no Hf atoms"),
    (DesignSpec(vacancy_species="Se", lattice_species=("Mo",), sites_per_lattice_atom=2),
     lambda: layer(0, 0), "no Mo atoms"),
    (DesignSpec(density_region=(100.0, 101.0)), lambda: layer(0, 0), "no atoms lie between"),
    (WSE2_SPEC, lambda: mx2("WSe2").repeat((2, 2, 1)).copy(), None),
])
def test_undefined_variables_raise(spec, atoms_fn, fragment):
    atoms = atoms_fn()
    if fragment is None:  # mx2 is periodic in all three axes: no layer for per-area values
        atoms.pbc = True
        fragment = "non-periodic axes"
    with pytest.raises(MLHError, match=fragment):
        design_variables(atoms, spec)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"dopant": "Nb"}, "both a dopant and a host"),
    ({"vacancy_species": "Se"}, "lattice species"),
    ({"vacancy_species": "Se", "lattice_species": ("W",)}, "sites per lattice atom"),
    ({"dopant": "Qq", "host": "W"}, "unknown chemical symbols"),
    ({"density_region": (2.0, 1.0)}, "LOWER must be below UPPER"),
])
def test_bad_specs_raise(kwargs, fragment):
    with pytest.raises(MLHError, match=fragment):
        DesignSpec(**kwargs)
