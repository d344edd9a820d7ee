"""Localized-orbital basis descriptions (per species) and orbital bookkeeping.

Lengths are in Å. Within an atom the orbitals follow the order of its radial
functions; each radial function of angular momentum l contributes 2l+1 real
spherical harmonics in the order m = -l..l (p: y, z, x; d: xy, yz, 3z²-r², zx,
x²-y²), which is both GPAW's and e3x's order (see docs/schema.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlh.errors import MLHError

__all__ = ["SpeciesBasis", "Basis", "same_species_basis", "check_model_basis"]

MAX_ANGULAR_MOMENTUM = 3


@dataclass(frozen=True)
class SpeciesBasis:
    """Radial functions of one species.

    Attributes:
        number: atomic number.
        ls: angular momentum of each radial function, in basis order.
        rcuts: cutoff radius of each radial function (Å).
        labels: a human-readable label per radial function (e.g. "5d-sz").
    """

    number: int
    ls: tuple[int, ...]
    rcuts: tuple[float, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if not (len(self.ls) == len(self.rcuts) == len(self.labels)):
            raise MLHError(
                f"species Z={self.number}: ls, rcuts and labels differ in length "
                f"({len(self.ls)}, {len(self.rcuts)}, {len(self.labels)})"
            )
        bad = [l for l in self.ls if not 0 <= l <= MAX_ANGULAR_MOMENTUM]
        if bad:
            raise MLHError(
                f"species Z={self.number}: angular momenta {bad} outside 0..{MAX_ANGULAR_MOMENTUM}"
            )

    @property
    def n_orbitals(self) -> int:
        """Number of basis functions (sum of 2l+1)."""
        return sum(2 * l + 1 for l in self.ls)

    @property
    def rcut(self) -> float:
        """Largest cutoff radius of this species (Å)."""
        return max(self.rcuts)


@dataclass(frozen=True)
class Basis:
    """The basis of a whole record: a name (e.g. "szp(dzp)") and one entry per species.

    Attributes:
        name: basis-set name as given to the DFT code.
        species: one SpeciesBasis per atomic number present, sorted by number.
    """

    name: str
    species: tuple[SpeciesBasis, ...]

    def __post_init__(self) -> None:
        numbers = [s.number for s in self.species]
        if numbers != sorted(set(numbers)):
            raise MLHError(f"basis species must be unique and sorted, got {numbers}")

    def for_number(self, number: int) -> SpeciesBasis:
        """The SpeciesBasis of atomic number `number`."""
        for s in self.species:
            if s.number == number:
                return s
        raise MLHError(f"basis {self.name!r} has no species with Z={number}")

    def orbital_counts(self, numbers: np.ndarray) -> np.ndarray:
        """Number of orbitals of each atom, shape (n_atoms,)."""
        table = {s.number: s.n_orbitals for s in self.species}
        try:
            return np.array([table[int(z)] for z in numbers], dtype=np.int64)
        except KeyError as err:
            raise MLHError(f"basis {self.name!r} has no species with Z={err.args[0]}") from None

    def rcut_per_atom(self, numbers: np.ndarray) -> np.ndarray:
        """Largest basis cutoff radius of each atom (Å), shape (n_atoms,)."""
        table = {s.number: s.rcut for s in self.species}
        return np.array([table[int(z)] for z in numbers], dtype=float)


def same_species_basis(a: SpeciesBasis, b: SpeciesBasis) -> bool:
    """Same radial functions: equal ls and labels, cutoffs within 1e-6 Å."""
    return (
        a.ls == b.ls
        and a.labels == b.labels
        and np.allclose(a.rcuts, b.rcuts, rtol=0, atol=1e-6)
    )


def check_model_basis(basis: Basis, model_basis: Basis, numbers: np.ndarray, source: str) -> None:
    """Raise MLHError naming `source` unless every species in `numbers` has the model's basis.

    `basis` is the record's (or GPAW's) basis, `model_basis` the one the model was trained on
    (`same_species_basis` per species, in ascending Z).
    """
    for number in sorted(set(np.asarray(numbers).tolist())):
        if not same_species_basis(basis.for_number(number), model_basis.for_number(number)):
            raise MLHError(f"{source}: the basis of species {number} differs from the model's")
