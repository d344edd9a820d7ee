"""Irreps layouts of every species pair a model predicts, padded to one shared shape.

The network outputs one e3x feature array per atom (on-site block) and per oriented
pair (off-site block), of shape (2, (max_degree+1)^2, n_features) whatever the species.
A species is an atomic number and a ghost flag: a ghost atom (basis functions, no
potential; a vacancy) is its own species, with its own embedding, scale-shift and
outputs, and the basis of its element. `OutputLayouts` holds, for the model's species
(indices 0..S-1, sorted by (atomic number, ghost)), the layout of each ordered species
pair padded to that shape, the masks of stored entries, and the signed permutation
that turns the irreps of a block H into the irreps of H^T (the block seen from the
other atom). Tables are numpy arrays indexed by species indices so that jitted code
can gather them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from mlh.errors import MLHError
from mlh.model.irreps import IrrepsLayout, block_to_irreps, irreps_to_block
from mlh.record.basis import Basis

__all__ = ["OutputLayouts"]


def _needed(ls_i: tuple[int, ...], ls_j: tuple[int, ...]) -> tuple[int, int]:
    """(max_degree, n_features) the unpadded layout of (ls_i, ls_j) needs."""
    layout = IrrepsLayout.for_pair(ls_i, ls_j)
    return layout.max_degree, layout.n_features


def _transpose_table(layout_ab: IrrepsLayout, layout_ba: IrrepsLayout) -> tuple[np.ndarray, np.ndarray]:
    """Gather index and sign (K,) such that irreps(H^T in ab) = sign * irreps(H in ba)[index].

    K is the flattened size of the irreps array. Entries outside layout_ab's mask get
    index 0 and sign 0.

    Raises:
        MLHError: if transposition is not a signed permutation (it always is for e3x's
            real Clebsch-Gordan coefficients; this guards the assumption).
    """
    size = int(np.prod(layout_ab.shape))
    index = np.zeros(size, dtype=np.int32)
    sign = np.zeros(size, dtype=np.int8)
    for k in np.flatnonzero(layout_ba.mask.ravel()):
        unit = np.zeros(size)
        unit[k] = 1.0
        image = block_to_irreps(irreps_to_block(unit.reshape(layout_ba.shape), layout_ba).T, layout_ab)
        image = image.ravel()
        target = int(np.argmax(np.abs(image)))
        if abs(abs(image[target]) - 1.0) > 1e-10 or np.abs(image).sum() - 1.0 > 1e-10:
            raise MLHError("block transposition is not a signed permutation of the irreps")
        index[target] = k
        sign[target] = int(np.sign(image[target]))
    return index, sign


@dataclass(frozen=True)
class OutputLayouts:
    """Layouts of all ordered species pairs of a model, padded to one shape.

    Attributes:
        basis: the basis of the model's elements (defines ls and orbital counts).
        numbers: (S,) atomic number of each species.
        onsite_degree, onsite_features: shape parameters of on-site irreps arrays.
        offsite_degree, offsite_features: shape parameters of pair irreps arrays.
        ghosts: (S,) True for ghost species; empty (models without ghosts) means all
            False. Species are unique and sorted by (number, ghost); the species index
            of an atom is the position of its (number, ghost) here.
    """

    basis: Basis
    numbers: tuple[int, ...]
    onsite_degree: int
    onsite_features: int
    offsite_degree: int
    offsite_features: int
    ghosts: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        numbers = tuple(int(z) for z in self.numbers)
        ghosts = tuple(bool(g) for g in self.ghosts) or (False,) * len(numbers)
        object.__setattr__(self, "numbers", numbers)
        object.__setattr__(self, "ghosts", ghosts)
        species = list(zip(numbers, ghosts))
        if len(ghosts) != len(numbers) or species != sorted(set(species)):
            raise MLHError(f"species must be unique and sorted by (number, ghost), got {species}")

    @classmethod
    def from_basis(
        cls, basis: Basis, numbers: tuple[int, ...] | None = None, ghost_numbers: tuple[int, ...] = ()
    ) -> OutputLayouts:
        """Layouts for `numbers` (default: every element of `basis`) and ghost species of `ghost_numbers`."""
        real = {s.number for s in basis.species} if numbers is None else set(numbers)
        species = sorted({(z, False) for z in real} | {(z, True) for z in ghost_numbers})
        ls = [basis.for_number(z).ls for z, _ in species]
        onsite = [_needed(l, l) for l in ls]
        offsite = [_needed(a, b) for a in ls for b in ls]
        return cls(
            basis=basis,
            numbers=tuple(z for z, _ in species),
            onsite_degree=max(d for d, _ in onsite),
            onsite_features=max(f for _, f in onsite),
            offsite_degree=max(d for d, _ in offsite),
            offsite_features=max(f for _, f in offsite),
            ghosts=tuple(g for _, g in species),
        )

    @property
    def n_species(self) -> int:
        return len(self.numbers)

    @property
    def species_names(self) -> list[str]:
        """Element symbol of each species, "(ghost)" appended for ghost species."""
        from ase.data import chemical_symbols

        return [chemical_symbols[z] + ("(ghost)" if g else "") for z, g in zip(self.numbers, self.ghosts)]

    def species_index(
        self, numbers: np.ndarray, source: str = "structure", ghost: np.ndarray | None = None,
        model: str = "the model",
    ) -> np.ndarray:
        """Species indices (N,) of atoms with atomic numbers (N,) and ghost flags (N,) (None: no ghosts).

        `source` and `model` name the structure and the model in the error message.

        Raises:
            MLHError: a species (element, or ghost of an element) the model lacks.
        """
        numbers = np.asarray(numbers, np.int64)
        ghost = np.zeros(len(numbers), bool) if ghost is None else np.asarray(ghost, bool)
        codes = 2 * numbers + ghost
        known = 2 * np.asarray(self.numbers, np.int64) + np.asarray(self.ghosts, np.int64)
        unknown = sorted(set(codes.tolist()) - set(known.tolist()))
        if unknown:
            from ase.data import chemical_symbols

            names = ", ".join(chemical_symbols[c // 2] + (" (ghost)" if c % 2 else "") for c in unknown)
            known_names = ", ".join(self.species_names)
            raise MLHError(f"{source}: species {names} not known to {model} (it knows {known_names})")
        return np.searchsorted(known, codes).astype(np.int32)

    def ls(self, species: int) -> tuple[int, ...]:
        return self.basis.for_number(self.numbers[species]).ls

    def n_orbitals(self, species: int) -> int:
        return self.basis.for_number(self.numbers[species]).n_orbitals

    def onsite_layout(self, species: int) -> IrrepsLayout:
        return IrrepsLayout.for_onsite(
            self.ls(species), max_degree=self.onsite_degree, n_features=self.onsite_features
        )

    def pair_layout(self, species_i: int, species_j: int) -> IrrepsLayout:
        return IrrepsLayout.for_pair(
            self.ls(species_i),
            self.ls(species_j),
            max_degree=self.offsite_degree,
            n_features=self.offsite_features,
        )

    @property
    def onsite_shape(self) -> tuple[int, int, int]:
        return (2, (self.onsite_degree + 1) ** 2, self.onsite_features)

    @property
    def offsite_shape(self) -> tuple[int, int, int]:
        return (2, (self.offsite_degree + 1) ** 2, self.offsite_features)

    @cached_property
    def onsite_mask(self) -> np.ndarray:
        """(S, 2, L, F) bool: stored entries of each species' on-site irreps."""
        return np.stack([self.onsite_layout(a).mask for a in range(self.n_species)])

    @cached_property
    def offsite_mask(self) -> np.ndarray:
        """(S, S, 2, L, F) bool: stored entries of each ordered pair's irreps."""
        s = range(self.n_species)
        return np.stack([np.stack([self.pair_layout(a, b).mask for b in s]) for a in s])

    @cached_property
    def onsite_transpose(self) -> tuple[np.ndarray, np.ndarray]:
        """Gather index and sign (S, K): irreps of H^T from irreps of H, on-site."""
        tables = [
            _transpose_table(self.onsite_layout(a), self.onsite_layout(a)) for a in range(self.n_species)
        ]
        return np.stack([t[0] for t in tables]), np.stack([t[1] for t in tables])

    @cached_property
    def offsite_transpose(self) -> tuple[np.ndarray, np.ndarray]:
        """Gather index and sign (S, S, K): irreps of H_ba^T in layout ab from irreps in layout ba."""
        s = range(self.n_species)
        tables = [[_transpose_table(self.pair_layout(a, b), self.pair_layout(b, a)) for b in s] for a in s]
        index = np.stack([np.stack([t[0] for t in row]) for row in tables])
        sign = np.stack([np.stack([t[1] for t in row]) for row in tables])
        return index, sign

    def to_dict(self) -> dict:
        """JSON-able description (basis is stored separately)."""
        return {
            "numbers": list(self.numbers),
            "onsite_degree": self.onsite_degree,
            "onsite_features": self.onsite_features,
            "offsite_degree": self.offsite_degree,
            "offsite_features": self.offsite_features,
            "ghosts": list(self.ghosts),
        }
