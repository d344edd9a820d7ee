"""Training-structure recipes: defective WSe2 monolayers and strained/rattled quartz.

Lengths in Å. Vacancies are removed atoms, or kept as ghost atoms
(`atoms.arrays["ghost"]`, basis functions without potential) when `ghosts=True`.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import make_supercell, mx2
from ase.spacegroup import crystal

__all__ = ["wse2_with_vacancies", "quartz_with_vacancy", "QUARTZ_CELLPAR"]

QUARTZ_CELLPAR = (4.916, 4.916, 5.405, 90.0, 90.0, 120.0)


def _vacancies(atoms: Atoms, candidates: np.ndarray, count: int,
               rng: np.random.Generator, ghosts: bool) -> Atoms:
    """Remove (or mark as ghosts) `count` random atoms among `candidates`."""
    chosen = rng.choice(candidates, size=min(count, len(candidates)), replace=False)
    if ghosts:
        ghost = np.zeros(len(atoms), dtype=bool)
        ghost[chosen] = True
        atoms.arrays["ghost"] = ghost
        return atoms
    del atoms[sorted(chosen.tolist())]
    return atoms


def _strain(atoms: Atoms, strain: np.ndarray) -> None:
    """Scale the cell by 1 + strain along its axes, moving atoms with it."""
    atoms.set_cell(atoms.cell.array * (1.0 + strain)[:, None], scale_atoms=True)


def wse2_with_vacancies(
    rng: np.random.Generator,
    repeat: tuple[int, int] = (3, 2),
    a: float = 3.32,
    thickness: float = 3.2,
    vacuum: float = 5.0,
    max_strain: float = 0.02,
    mean_vacancies: float = 1.0,
    rattle: float = 0.03,
    ghosts: bool = False,
    dopant: str = "Nb",
    mean_dopants: float = 0.0,
    dopant_rate: float | None = None,
    vacancy_rate: float | None = None,
) -> Atoms:
    """A WSe2 monolayer on an orthogonal supercell, following GEARS H section 4.1.1.

    Args:
        rng: random generator (strain, vacancy count and sites, rattle).
        repeat: orthogonal cells (a x sqrt(3) a, 6 atoms each) along x and y.
        a: lattice constant (Å); thickness: Se-Se vertical distance (Å).
        vacuum: vacuum on each side along the non-periodic z (Å).
        max_strain: uniform random diagonal in-plane strain in [-max, +max].
        mean_vacancies: Poisson mean of the number of Se vacancies.
        rattle: standard deviation of Gaussian displacements (Å).
        ghosts: keep vacancies as ghost atoms instead of removing them.
        dopant: element substituted on W sites (Nb makes the layer p-type).
        mean_dopants: Poisson mean of the number of substituted W sites.
        dopant_rate, vacancy_rate: if given, the Poisson means are these fractions of
            the W (Se) sites instead of `mean_dopants` (`mean_vacancies`).
    """
    primitive = mx2("WSe2", a=a, thickness=thickness, vacuum=vacuum)
    orthogonal = make_supercell(primitive, [[1, 0, 0], [1, 2, 0], [0, 0, 1]])
    atoms = orthogonal.repeat((*repeat, 1))
    atoms.pbc = (True, True, False)
    _strain(atoms, np.array([*rng.uniform(-max_strain, max_strain, 2), 0.0]))
    atoms.rattle(rattle, seed=int(rng.integers(2**31)))
    tungsten = np.flatnonzero(atoms.numbers == 74)
    selenium = np.flatnonzero(atoms.numbers == 34)
    if dopant_rate is not None:
        mean_dopants = dopant_rate * len(tungsten)
    if vacancy_rate is not None:
        mean_vacancies = vacancy_rate * len(selenium)
    if mean_dopants > 0:
        count = min(int(rng.poisson(mean_dopants)), len(tungsten))
        atoms.symbols[rng.choice(tungsten, size=count, replace=False)] = dopant
    return _vacancies(atoms, selenium, int(rng.poisson(mean_vacancies)), rng, ghosts)


def quartz_with_vacancy(
    rng: np.random.Generator,
    repeat: tuple[int, int, int] = (2, 2, 1),
    max_strain: float = 0.02,
    rattle: float = 0.05,
    vacancy_probability: float = 0.5,
    ghosts: bool = False,
    vacancy_relaxation: float = 0.0,
) -> Atoms:
    """An amorphous-like SiO2 cell: strained, rattled alpha-quartz, maybe with one O vacancy.

    Args:
        rng: random generator.
        repeat: quartz unit cells (9 atoms each) along the three axes.
        max_strain: uniform random diagonal strain in [-max, +max] per axis.
        rattle: standard deviation of Gaussian displacements (Å).
        vacancy_probability: chance of one O vacancy.
        ghosts: keep the vacancy as a ghost atom instead of removing it.
        vacancy_relaxation: each of the vacancy's two Si neighbours moves towards the
            other by a uniform random distance in [0, vacancy_relaxation] (Å), the way the
            relaxed O vacancy forms a Si-Si bond (~0.3 Å each), so that training data covers
            relaxation geometries.
    """
    unit = crystal(["Si", "O"], basis=[(0.4697, 0.0, 1 / 3), (0.4135, 0.2669, 0.2142)],
                   spacegroup=152, cellpar=list(QUARTZ_CELLPAR))
    atoms = unit.repeat(repeat)
    _strain(atoms, rng.uniform(-max_strain, max_strain, 3))
    atoms.rattle(rattle, seed=int(rng.integers(2**31)))
    if rng.uniform() >= vacancy_probability:
        return atoms
    oxygen = rng.choice(np.flatnonzero(atoms.numbers == 8), size=1)
    if vacancy_relaxation > 0:
        _pull_neighbours(atoms, int(oxygen[0]), 14, rng.uniform(0, vacancy_relaxation, 2))
    return _vacancies(atoms, oxygen, 1, rng, ghosts)


def _pull_neighbours(atoms: Atoms, site: int, number: int, distances: np.ndarray) -> None:
    """Move the two atoms of atomic number `number` nearest to `site` towards each other
    by `distances` (Å, one each; minimum-image vectors)."""
    candidates = np.flatnonzero(atoms.numbers == number)
    nearest = candidates[np.argsort(atoms.get_distances(site, candidates, mic=True))[:2]]
    bond = atoms.get_distance(nearest[0], nearest[1], mic=True, vector=True)
    unit = bond / np.linalg.norm(bond)
    atoms.positions[nearest[0]] += distances[0] * unit
    atoms.positions[nearest[1]] -= distances[1] * unit
