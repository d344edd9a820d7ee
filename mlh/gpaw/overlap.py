"""Exact, sparse LCAO overlap blocks S_ij(R) from GPAW's two-centre tables, no calculation.

GPAW's LCAO overlap includes the PAW correction,

    S_{mu nu} = <phi_mu|phi_nu> + sum_a sum_{i,j} <phi_mu|p^a_i> dO^a_{ij} <p^a_j|phi_nu>,

with a running over all atoms and their periodic images. Both factors are two-centre
integrals that GPAW tabulates as radial splines times Gaunt coefficients times solid
harmonics (gpaw.lcao.tci.TCIExpansions, gpaw.lcao.overlap.OverlapExpansion). This module
evaluates those same expansions for many displacement vectors at once (vectorised per
species pair), accumulates the three-centre PAW sum per projector atom, and returns the
blocks in the record convention (docs/schema.md) without a grid, an SCF or any dense
N_orb x N_orb matrix. The work is done in chunks of at most `chunk_size` blocks, so memory
stays at the size of the result plus O(chunk_size) temporaries.

The setups (and so the basis, the projectors and the spline tables) are created exactly as a
GPAW calculation with the same `GPAWSettings` creates them, for the species (and ghost atoms)
of the structure; the spline tables depend on the largest cutoff among those setups, as in
GPAW. Positions are wrapped into the cell as GPAW wraps them, so the lattice shifts R refer
to the same images as in GPAW-made records. Lengths in Å, S dimensionless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.neighborlist import primitive_neighbor_list
from ase.units import Bohr

from mlh.errors import MLHError
from mlh.gpaw.reference import (
    BLOCK_TOLERANCE,
    basis_from_setups,
    drop_negligible_pairs,
    ghost_mask,
    gpaw_setups,
    projector_reach,
    wrapped_positions,
)
from mlh.gpaw.settings import GPAWSettings
from mlh.record.basis import Basis
from mlh.record.hamiltonian import HamiltonianRecord, canonical_pair_mask
from mlh.record.realspace import image_pairs

__all__ = [
    "OverlapBlocks", "OverlapTables", "gpaw_setups", "wrapped_positions", "pair_reach",
    "pair_list", "overlap_pairs", "overlap_blocks", "same_atom_entry_pairs", "DEFAULT_CHUNK_SIZE",
]

# Blocks (pairs, or projector-orbital-orbital triples) evaluated at once.
DEFAULT_CHUNK_SIZE = 50_000
# GPAW's tci_overlap skips spline values below this (C code, gpaw/c/lcao.c).
_SPLINE_ZERO = 1e-10


@dataclass(frozen=True, eq=False)
class OverlapBlocks:
    """Overlap blocks of one structure in the record convention (docs/schema.md).

    Attributes:
        pair_i, pair_j: (n_pairs,) atoms of each stored pair (i < j, or i == j and R > 0).
        pair_shift: (n_pairs, 3) integer lattice shift R of atom j.
        S_pair: (n_pair_values,) row-major pair blocks, concatenated in pair order.
        S_onsite: (n_onsite_values,) row-major on-site blocks (i, i, 0), in atom order.
        positions: (n_atoms, 3) positions wrapped into the cell as GPAW wraps them (Å);
            R refers to these.
        basis: the basis of the setups (as stored in GPAW-made records).
        n_electrons: valence electrons of the neutral structure (ghost atoms hold none).
    """

    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_shift: np.ndarray
    S_pair: np.ndarray
    S_onsite: np.ndarray
    positions: np.ndarray
    basis: Basis
    n_electrons: float

    def record_fields(self) -> dict[str, Any]:
        """Keyword arguments for HamiltonianRecord: pairs, S blocks, positions and basis."""
        return dict(pair_i=self.pair_i, pair_j=self.pair_j, pair_shift=self.pair_shift,
                    S_pair=self.S_pair, S_onsite=self.S_onsite, positions=self.positions,
                    basis=self.basis)


# ------------------------------------------------------------------ setups and geometry
def pair_reach(setups, numbers: np.ndarray) -> np.ndarray:
    """(n_atoms,) pair reach per atom (Å): largest basis cutoff + largest projector cutoff.

    This is the reach of GPAW-made records (mlh.gpaw.reference): pairs with
    |tau_j + R @ cell - tau_i| < reach_i + reach_j can have non-zero H or S.
    """
    basis = basis_from_setups(setups, numbers, np.zeros(len(numbers), bool), "")
    return basis.rcut_per_atom(numbers) + projector_reach(setups)


def pair_list(atoms: Atoms, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stored-orientation pairs (i, j, R) of `atoms` for a per-atom reach (Å); no S computed.

    Positions are wrapped as GPAW wraps them (`wrapped_positions`), so R matches records.
    Returns pair_i (P,), pair_j (P,), pair_shift (P, 3), sorted by (i, j, R); on-site
    entries (i, i, 0) are not included.
    """
    return image_pairs(wrapped_positions(atoms), atoms.cell.array, atoms.pbc,
                       np.asarray(reach, float))


def overlap_pairs(
    atoms: Atoms, settings: GPAWSettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`pair_list` with the reach of GPAW-made records for these settings (before dropping
    negligible pairs, so a superset of a record's pairs)."""
    setups = gpaw_setups(atoms, settings)
    return pair_list(atoms, pair_reach(setups, atoms.numbers))


# ------------------------------------------------------------------ spline tables
def _solid_harmonics(R_pv: np.ndarray, l: int) -> np.ndarray:
    """(P, 2l+1) real solid harmonics r^l Y_lm(R) (GPAW's normalisation and order)."""
    from gpaw.sphere.spherical_harmonics import YL

    out = np.zeros((len(R_pv), 2 * l + 1))
    powers = [np.ones((len(R_pv), 3))]
    for _ in range(l):
        powers.append(powers[-1] * R_pv)
    for m in range(2 * l + 1):
        for coef, (nx, ny, nz) in YL[l * l + m]:
            out[:, m] += coef * powers[nx][:, 0] * powers[ny][:, 1] * powers[nz][:, 2]
    return out


class _PairTable:
    """One species pair's TwoSiteOverlapExpansions, evaluated for many vectors at once."""

    def __init__(self, tsoe) -> None:
        from gpaw.sphere.gaunt import gaunt

        self.shape = tsoe.shape
        self.terms = []  # (row slice, col slice, spline, l, Gaunt matrix (nm1*nm2, 2l+1))
        row = 0
        for oe_j in tsoe.oe_jj:
            col = 0
            for oe in oe_j:
                n1, n2 = oe.shape
                G_LLL = gaunt(oe.lmaxgaunt)
                La, Lb = oe.la**2, oe.lb**2
                for ispline, spline in enumerate(oe.spline_l):
                    l = (oe.la + oe.lb) % 2 + 2 * ispline
                    G = G_LLL[La:La + n1, Lb:Lb + n2, l * l:(l + 1) ** 2].reshape(n1 * n2, -1)
                    if np.any(G):
                        self.terms.append(
                            (slice(row, row + n1), slice(col, col + n2), spline, l, G))
                col += n2
            row += oe_j[0].shape[0] if len(oe_j) else 0

    def evaluate(self, R_pv: np.ndarray) -> np.ndarray:
        """(P, n1, n2) overlaps for displacement vectors R_pv (Bohr), as GPAW evaluates them."""
        P = len(R_pv)
        out = np.zeros((P,) + self.shape)
        r = np.ascontiguousarray(np.sqrt((R_pv**2).sum(axis=1)))
        rlY: dict[int, np.ndarray] = {}
        for rows, cols, spline, l, G in self.terms:
            s = spline.map(r)
            s[np.abs(s) < _SPLINE_ZERO] = 0.0
            if l not in rlY:
                rlY[l] = _solid_harmonics(R_pv, l)
            block = (rlY[l] * s[:, None]) @ G.T
            out[:, rows, cols] += block.reshape(P, rows.stop - rows.start,
                                                cols.stop - cols.start)
        return out


class OverlapTables:
    """GPAW's two-centre tables (basis-basis and projector-basis) for a set of setups.

    Built once per structure's species set; `blocks` evaluates any geometry with
    the same setups (same atoms order of setup types).
    """

    def __init__(self, setups) -> None:
        from gpaw.lcao.tci import TCIExpansions

        self.setups = setups
        tci = TCIExpansions.new_from_setups(setups)
        self.type_a = np.asarray(tci.I_a, dtype=np.int64)
        self.setups_I = list(setups.setups.values())
        n_types = len(self.setups_I)
        self.phit_rc_I = np.asarray(tci.phit_rcmax_I)  # Bohr, as GPAW's pair filter
        self.pt_rc_I = np.asarray(tci.pt_rcmax_I)
        self.nao_I = np.array([tci.O_expansions.tsoe_II[I, 0].shape[0] for I in range(n_types)])
        self.ni_I = np.array([s.ni for s in self.setups_I])
        self.dO_I = [np.asarray(s.dO_ii, float) for s in self.setups_I]
        self.O = {(I1, I2): _PairTable(tci.O_expansions.tsoe_II[I1, I2])
                  for I1 in range(n_types) for I2 in range(n_types)}
        self.P = {(Ia, I): _PairTable(tci.P_expansions.tsoe_II[Ia, I])
                  for Ia in range(n_types) for I in range(n_types)}

    # -------------------------------------------------------------- evaluation
    def blocks(
        self,
        positions: np.ndarray,
        cell: np.ndarray,
        pbc: np.ndarray,
        pair_i: np.ndarray,
        pair_j: np.ndarray,
        pair_shift: np.ndarray,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Flat S_pair, S_onsite for the given stored pairs (all non-zero blocks must be in it).

        positions (Å) must be wrapped as GPAW wraps them; the pairs sorted by (i, j, R) as
        `pair_list` returns them.
        """
        if chunk_size < 1:
            raise MLHError(f"chunk_size must be positive, got {chunk_size}")
        positions = np.asarray(positions, float)
        cell = np.asarray(cell, float)
        pbc = np.asarray(pbc, bool)
        n_atoms = len(positions)
        if n_atoms != len(self.type_a):
            raise MLHError(f"{n_atoms} positions for {len(self.type_a)} setups")
        orbitals = self.nao_I[self.type_a]
        n_pairs = len(pair_i)
        pair_sizes = orbitals[pair_i] * orbitals[pair_j]
        onsite_sizes = orbitals**2
        # One flat buffer: pair values, then on-site values. Slots: pairs, then atoms.
        slot_start = np.concatenate([
            np.concatenate([[0], np.cumsum(pair_sizes)[:-1]]) if n_pairs else np.zeros(0),
            pair_sizes.sum() + np.concatenate([[0], np.cumsum(onsite_sizes)[:-1]]),
        ]).astype(np.int64)
        n_pair_values = int(pair_sizes.sum())
        buffer = np.zeros(n_pair_values + int(onsite_sizes.sum()))
        slots = _SlotIndex(pair_i, pair_j, pair_shift, n_atoms)

        self._two_centre(positions, cell, pair_i, pair_j, pair_shift, buffer, slot_start,
                         chunk_size)
        self._paw(positions, cell, pbc, slots, buffer, slot_start, chunk_size)

        S_pair, S_onsite = buffer[:n_pair_values], buffer[n_pair_values:].copy()
        _mirror_lower_triangle(S_onsite, orbitals)
        return S_pair, S_onsite

    def _two_centre(self, positions, cell, pair_i, pair_j, pair_shift, buffer, slot_start,
                    chunk_size) -> None:
        """<phi_i|phi_j(R)> for stored pairs within phit_rc_i + phit_rc_j, and on-site."""
        n_atoms = len(positions)
        n_pairs = len(pair_i)
        atoms = np.arange(n_atoms)
        # Pairs, then on-site entries (i, i, 0) at slot n_pairs + i.
        all_i = np.concatenate([pair_i, atoms])
        all_j = np.concatenate([pair_j, atoms])
        all_shift = np.concatenate([pair_shift, np.zeros((n_atoms, 3), np.int64)])
        all_slot = np.arange(n_pairs + n_atoms)
        type_i, type_j = self.type_a[all_i], self.type_a[all_j]
        for start in range(0, len(all_i), chunk_size):
            part = slice(start, start + chunk_size)
            i, j, shift, slot = all_i[part], all_j[part], all_shift[part], all_slot[part]
            R_pv = (positions[j] + shift @ cell - positions[i]) / Bohr
            r = np.sqrt((R_pv**2).sum(axis=1))
            reach = self.phit_rc_I[type_i[part]] + self.phit_rc_I[type_j[part]]
            inside = r < reach
            codes = type_i[part] * len(self.setups_I) + type_j[part]
            for code in np.unique(codes[inside]):
                I1, I2 = divmod(int(code), len(self.setups_I))
                sel = np.flatnonzero(inside & (codes == code))
                values = self.O[I1, I2].evaluate(R_pv[sel])
                size = values.shape[1] * values.shape[2]
                index = slot_start[slot[sel]][:, None] + np.arange(size)
                buffer[index] += values.reshape(len(sel), size)

    def paw_neighbours(
        self, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, skin: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Projector-orbital entries n = (a, i, S) of the PAW three-centre sum.

        Entries have |tau_i + S @ cell - tau_a| < pt_rc_a + phit_rc_i + skin and a with
        projectors; a is in the home cell. positions (Å) wrapped as GPAW wraps them; skin (Å).

        Returns:
            a_n, i_n (N,), S_n (N, 3) int64 and R_nv (N, 3) in Bohr, sorted by (a, i).
        """
        pt_rc_a = self.pt_rc_I[self.type_a] * Bohr
        phit_rc_a = self.phit_rc_I[self.type_a] * Bohr
        radius = np.maximum(pt_rc_a, phit_rc_a) + 0.5 * skin
        # Projector atom a (first index, home cell) -> orbital atom i at image S.
        a_n, i_n, S_n = primitive_neighbor_list(
            "ijS", pbc, cell, positions, radius, self_interaction=True)
        S_n = S_n.astype(np.int64)
        R_nv = (positions[i_n] + S_n @ cell - positions[a_n]) / Bohr
        r_n = np.sqrt((R_nv**2).sum(axis=1))
        keep = r_n < (self.pt_rc_I[self.type_a[a_n]] + self.phit_rc_I[self.type_a[i_n]]
                      + skin / Bohr)
        keep &= self.ni_I[self.type_a[a_n]] > 0
        order = np.lexsort((i_n, a_n))
        order = order[keep[order]]
        return a_n[order], i_n[order], S_n[order], R_nv[order]

    def _paw(self, positions, cell, pbc, slots, buffer, slot_start, chunk_size) -> None:
        """sum_a P^a(mu)^T dO^a P^a(nu) over projector atoms a and orbital-atom images."""
        n_types = len(self.setups_I)
        a_n, i_n, S_n, R_nv = self.paw_neighbours(positions, cell, pbc)

        count = np.bincount(a_n, minlength=len(positions))
        first = np.concatenate([[0], np.cumsum(count)])
        triples = count**2
        # Chunks of projector atoms with at most ~chunk_size triples (at least one atom).
        a = 0
        while a < len(positions):
            stop = a + 1
            total = triples[a]
            while stop < len(positions) and total + triples[stop] <= chunk_size:
                total += triples[stop]
                stop += 1
            self._paw_chunk(a, stop, first, count, a_n, i_n, S_n, R_nv, slots, buffer,
                            slot_start, n_types)
            a = stop

    def _paw_chunk(self, a0, a1, first, count, a_n, i_n, S_n, R_nv, slots, buffer,
                   slot_start, n_types) -> None:
        entries = np.arange(first[a0], first[a1])
        if len(entries) == 0:
            return
        type_a = self.type_a
        # <p^a | phi_i(image)> and dO^a <p^a | phi_i(image)> per neighbour entry, by species.
        group = type_a[a_n[entries]] * n_types + type_a[i_n[entries]]
        local = np.empty(len(entries), np.int64)
        P_g, DP_g = {}, {}
        for code in np.unique(group):
            sel = np.flatnonzero(group == code)
            Ia, I = divmod(int(code), n_types)
            P = self.P[Ia, I].evaluate(R_nv[entries[sel]])
            P_g[code] = P
            DP_g[code] = np.einsum("ij,njm->nim", self.dO_I[Ia], P)
            local[sel] = np.arange(len(sel))

        n1, n2 = same_atom_entry_pairs(count[a0:a1])
        i1, i2 = i_n[entries[n1]], i_n[entries[n2]]
        shift = S_n[entries[n2]] - S_n[entries[n1]]
        stored = canonical_pair_mask(i1, i2, shift) | (n1 == n2)
        n1, n2, i1, i2, shift = n1[stored], n2[stored], i1[stored], i2[stored], shift[stored]
        slot = slots.find(i1, i2, shift)

        g1, g2 = group[n1], group[n2]
        codes = g1 * (n_types * n_types) + g2
        for code in np.unique(codes):
            sel = np.flatnonzero(codes == code)
            c1, c2_ = divmod(int(code), n_types * n_types)
            left = P_g[c1][local[n1[sel]]]           # (T, ni, no1)
            right = DP_g[c2_][local[n2[sel]]]        # (T, ni, no2)
            values = np.matmul(left.transpose(0, 2, 1), right)
            size = values.shape[1] * values.shape[2]
            _scatter_add(buffer, slot_start, slot[sel], values.reshape(len(sel), size))


# ------------------------------------------------------------------ bookkeeping helpers
def same_atom_entry_pairs(count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ordered pairs (n1, n2) of entries that belong to the same projector atom.

    Entries are sorted by atom, `count` (n_atoms,) of them per atom; returns entry indices
    n1, n2 (sum(count**2),), grouped by atom (n1 slow, n2 fast within an atom).
    """
    count = np.asarray(count, np.int64)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    c2 = count**2
    owner = np.repeat(np.arange(len(count)), c2)
    offset = np.repeat(np.concatenate([[0], np.cumsum(c2)[:-1]]), c2)
    t = np.arange(int(c2.sum())) - offset
    c = count[owner]
    return first[owner] + t // c, first[owner] + t % c


class _SlotIndex:
    """Maps (i, j, R) of stored pairs and on-site entries to slots (pairs, then atoms)."""

    def __init__(self, pair_i, pair_j, pair_shift, n_atoms) -> None:
        self.n_atoms = n_atoms
        self.n_pairs = len(pair_i)
        self.half = np.abs(pair_shift).max(axis=0) if len(pair_shift) else np.zeros(3, np.int64)
        self.width = 2 * self.half + 1
        if float(n_atoms) ** 2 * float(np.prod(self.width)) >= 2.0**62:
            raise MLHError("too many atoms and lattice shifts for 64-bit pair keys")
        keys = self._keys(pair_i, pair_j, pair_shift)
        if np.any(np.diff(keys) <= 0):
            raise MLHError("pairs must be unique and sorted by (i, j, R)")
        self.keys = keys

    def _keys(self, i, j, shift) -> np.ndarray:
        key = np.asarray(i, np.int64) * self.n_atoms + np.asarray(j, np.int64)
        for d in range(3):
            key = key * self.width[d] + (shift[:, d] + self.half[d])
        return key

    def find(self, i, j, shift) -> np.ndarray:
        """Slots of entries (i, j, R): stored pairs, or on-site (i, i, 0) -> n_pairs + i."""
        onsite = (i == j) & ~shift.any(axis=1)
        slot = np.empty(len(i), np.int64)
        slot[onsite] = self.n_pairs + i[onsite]
        rest = ~onsite
        if rest.any():
            if np.any(np.abs(shift[rest]) > self.half):
                raise MLHError("a PAW three-centre term falls outside the pair list (bug)")
            keys = self._keys(i[rest], j[rest], shift[rest])
            where = np.searchsorted(self.keys, keys)
            where = np.minimum(where, len(self.keys) - 1)
            if len(self.keys) == 0 or np.any(self.keys[where] != keys):
                raise MLHError("a PAW three-centre term falls outside the pair list (bug)")
            slot[rest] = where
        return slot


def _scatter_add(buffer, slot_start, slot, values) -> None:
    """buffer[slot_start[slot] + k] += values[:, k], summing repeated slots."""
    order = np.argsort(slot, kind="stable")
    slot = slot[order]
    heads = np.flatnonzero(np.concatenate([[True], slot[1:] != slot[:-1]]))
    sums = np.add.reduceat(values[order], heads, axis=0)
    index = slot_start[slot[heads]][:, None] + np.arange(values.shape[1])
    buffer[index] += sums


def _mirror_lower_triangle(S_onsite: np.ndarray, orbitals: np.ndarray) -> None:
    """Make every on-site block exactly symmetric from its lower triangle (as GPAW does)."""
    offsets = np.concatenate([[0], np.cumsum(orbitals**2)])
    for n in np.unique(orbitals):
        atoms = np.flatnonzero(orbitals == n)
        rows, cols = np.triu_indices(int(n), 1)
        upper = offsets[atoms][:, None] + rows * n + cols
        lower = offsets[atoms][:, None] + cols * n + rows
        S_onsite[upper] = S_onsite[lower]


# ------------------------------------------------------------------ public entry point
def overlap_blocks(
    atoms: Atoms,
    settings: GPAWSettings,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    tolerance: float = BLOCK_TOLERANCE,
    tables: OverlapTables | None = None,
) -> OverlapBlocks:
    """S_ij(R) blocks of `atoms` as a GPAW LCAO calculation with `settings` would give them.

    Pairs: every image pair within the records' reach (basis rc + largest projector rc per
    atom), minus those whose |S| values are all below `tolerance` (as
    mlh.gpaw.reference.drop_negligible_pairs does for records). Ghost atoms
    (`atoms.arrays["ghost"]`) get GPAW's "ghost" setup.

    Args:
        atoms: the structure (cell required; positions are wrapped as GPAW wraps them).
        settings: xc, basis and setups of the calculation (other fields are not used).
        chunk_size: most pair or three-centre blocks evaluated at once (memory ~ 3 kB each).
        tolerance: pairs with max |S| below this are dropped (None or 0 keeps all).
        tables: OverlapTables of the same setups to reuse (skips building them again).

    Raises:
        MLHError: unknown element/basis, or inconsistent input.
    """
    ghost = ghost_mask(atoms)
    if tables is None:
        tables = OverlapTables(gpaw_setups(atoms, settings))
    setups = tables.setups
    if [int(z) for z, *_ in setups.id_a] != [int(z) for z in atoms.numbers]:
        raise MLHError("the tables' setups do not belong to these atoms")
    basis = basis_from_setups(setups, atoms.numbers, ghost, settings.basis)
    positions = wrapped_positions(atoms)
    reach = basis.rcut_per_atom(atoms.numbers) + projector_reach(setups)
    pair_i, pair_j, pair_shift = image_pairs(positions, atoms.cell.array, atoms.pbc, reach)
    S_pair, S_onsite = tables.blocks(positions, atoms.cell.array, atoms.pbc,
                                     pair_i, pair_j, pair_shift, chunk_size)
    if tolerance:
        record = HamiltonianRecord(
            numbers=atoms.numbers.copy(), positions=positions, cell=atoms.cell.array.copy(),
            pbc=atoms.pbc.copy(), ghost=ghost, basis=basis, pair_i=pair_i, pair_j=pair_j,
            pair_shift=pair_shift, S_pair=S_pair, S_onsite=S_onsite,
        )
        record = drop_negligible_pairs(record, tolerance)
        pair_i, pair_j, pair_shift, S_pair = (
            record.pair_i, record.pair_j, record.pair_shift, record.S_pair)
    return OverlapBlocks(pair_i=pair_i, pair_j=pair_j, pair_shift=pair_shift, S_pair=S_pair,
                         S_onsite=S_onsite, positions=positions, basis=basis,
                         n_electrons=float(setups.nvalence))
