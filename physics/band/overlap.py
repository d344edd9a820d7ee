"""Differentiable LCAO overlap blocks S_ij(R) in JAX, equal to GPAW's (and mlh.gpaw.overlap's).

GPAW's LCAO overlap with its PAW correction is

    S_{mu nu} = <phi_mu|phi_nu> + sum_a sum_{i,j} <phi_mu|p^a_i> dO^a_{ij} <p^a_j|phi_nu>,

a sum of two-centre integrals (orbital-orbital, projector-orbital) and three-centre products.
Every two-centre integral for a displacement R (from the first centre to the second) is

    X(R)[m1, m2] = sum_terms s_t(|R|) sum_m G_t[m1, m2, m] r^l Y_lm(R),

with GPAW's radial splines s_t (gpaw.lcao.tci tables, the same objects mlh.gpaw.overlap uses),
Gaunt coefficients G_t and real solid harmonics r^l Y_lm, polynomials in R. This module
rebuilds GPAW's cubic-spline coefficients exactly (gpaw/c/bmgs/spline.c) and writes the
spline, the solid harmonics and the products in jax.numpy, so S is a differentiable function
of the positions for a fixed topology:

- `overlap_topology` (numpy, not jittable) fixes the species, the stored pairs (i, j, R) in
  the record layout (mlh.record.hamiltonian), the projector-orbital entries (a, i, S) and the
  three-centre index lists, from the current positions (optionally with a skin);
- `overlap_blocks_jax(positions, topology)` (jitted, differentiable in positions) returns
  S_pair and S_onsite in the record layout;
- `overlap_force_term` gives the overlap part Tr[W dS/dR_a] of the forces by one jax.vjp.

By default every spline term is kept, so S(R) is smooth and within ~5e-7 of GPAW's S;
`smooth=False` also skips spline values below 1e-10 as GPAW does (equal to rounding, but
with tiny steps in S(R)). Work is done in chunks of at most `chunk_size` blocks, entries or
three-centre products (lax.map / lax.scan with rematerialisation), so memory stays near the
size of the result (peak process memory ~2 GB for the force term of 2,000 WSe2 atoms).

Units: positions, cell and skin in Å (GPAW's tables are in Bohr; converted inside), S
dimensionless, W in eV and forces in eV/Å. Physics is float64: call
`jax.config.update("jax_enable_x64", True)` before using this module (it refuses float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms
from ase.units import Bohr

from mlh.errors import MLHError
from mlh.gpaw.overlap import (
    OverlapTables,
    pair_list,
    pair_reach,
    same_atom_entry_pairs,
    wrapped_positions,
)
from mlh.record.hamiltonian import canonical_pair_mask
from physics._jax import SkinnedTopology, register_pytree, require_x64

__all__ = [
    "RadialTable", "OverlapTopology", "overlap_topology", "overlap_blocks_jax",
    "overlap_trace", "overlap_force_term", "spline_coefficients", "radial_table",
    "evaluate_radial_table", "DEFAULT_CHUNK_SIZE",
]

DEFAULT_CHUNK_SIZE = 2048
"""Blocks, entries or three-centre products evaluated at once."""

# GPAW's tci_overlap skips spline values below this (gpaw/c/lcao.c); kept for equality.
_SPLINE_ZERO = 1e-10


# ------------------------------------------------------------------ radial tables
def spline_coefficients(spline) -> tuple[np.ndarray, float]:
    """GPAW's cubic-spline coefficients of a gpaw.spline.Spline, rebuilt from its grid values.

    Follows bmgs_spline (gpaw/c/bmgs/spline.c): nbins uniform bins of width dr (Bohr),
    f'(0) = 0, and on bin b, s(r) = c0 + u (c1 + u (c2 + u c3)) with u = r - b dr; the
    row b = nbins is zero (s = 0 beyond the cutoff).

    Returns:
        (nbins + 1, 4) coefficients and dr (Bohr).
    """
    nbins = spline.get_npoints() - 1
    rmax = spline.get_cutoff()
    dr = rmax / nbins
    f = spline.map(np.linspace(0.0, rmax, nbins + 1))
    f[-1] = 0.0
    c = 3.0 / (dr * dr)
    f2 = np.empty(nbins + 1)
    u = np.empty(nbins)
    f2[0] = -0.5
    u[0] = (f[1] - f[0]) * c
    for b in range(1, nbins):
        p = 0.5 * f2[b - 1] + 2.0
        f2[b] = -0.5 / p
        u[b] = ((f[b + 1] - 2.0 * f[b] + f[b - 1]) * c - 0.5 * u[b - 1]) / p
    f2[nbins] = (f[nbins - 1] * c - 0.5 * u[nbins - 1]) / (0.5 * f2[nbins - 1] + 1.0)
    for b in range(nbins - 1, -1, -1):
        f2[b] = f2[b] * f2[b + 1] + u[b]
    coef = np.zeros((nbins + 1, 4))
    coef[:-1, 0] = f[:-1]
    coef[:-1, 1] = (f[1:] - f[:-1]) / dr - (f2[:-1] / 3 + f2[1:] / 6) * dr
    coef[:-1, 2] = 0.5 * f2[:-1]
    coef[:-1, 3] = (f2[1:] - f2[:-1]) / (6 * dr)
    return coef, dr


def _monomial_table(lmax: int) -> tuple[tuple[tuple[int, int, int], ...], np.ndarray]:
    """Exponents (a, b, c) of all monomials x^a y^b z^c of degree <= lmax and the matrix
    (n_mono, (lmax + 1)^2) that maps them to GPAW's real solid harmonics r^l Y_L."""
    from gpaw.sphere.spherical_harmonics import YL

    powers = [(a, b, d - a - b) for d in range(lmax + 1)
              for a in range(d, -1, -1) for b in range(d - a, -1, -1)]
    index = {p: n for n, p in enumerate(powers)}
    C = np.zeros((len(powers), (lmax + 1) ** 2))
    for L in range((lmax + 1) ** 2):
        for coef, p in YL[L]:
            C[index[tuple(p)], L] += coef
    return tuple(powers), C


@dataclass(frozen=True, eq=False)
class RadialTable:
    """One two-centre table (a species pair) as arrays: X(R) = (F(R) @ M).reshape(shape).

    F(R)[:, k] = s_{spline_k[k]}(|R|) * rlY_{L_k[k]}(R); values are zero for |R| >= cutoff.
    A pytree: arrays are leaves, the index tuples and sizes are static.

    Attributes:
        coef: (n_splines, n_rows, 4) spline coefficients, zero-padded rows (R in Bohr).
        dr: (n_splines,) bin widths (Bohr).
        M: (K, n1 * n2) Gaunt coefficients placed into the flattened block.
        Y: (n_mono, (lmax + 1)^2) maps the monomials `powers` to r^l Y_L.
        cutoff: largest |R| (Bohr) with non-zero values (GPAW's pair filter).
        spline_k, L_k: (K,) spline and solid-harmonic index of each feature.
        powers: (n_mono,) exponents (a, b, c) of the monomials x^a y^b z^c.
        shape: (n1, n2) block shape.
        lmax: largest l of the solid harmonics.
        spline_zero: spline values with |s| below this are set to zero (GPAW: 1e-10;
            0 keeps X(R) smooth).
    """

    coef: np.ndarray
    dr: np.ndarray
    M: np.ndarray
    Y: np.ndarray
    cutoff: np.ndarray
    spline_k: tuple[int, ...]
    L_k: tuple[int, ...]
    powers: tuple[tuple[int, int, int], ...]
    shape: tuple[int, int]
    lmax: int
    spline_zero: float


register_pytree(RadialTable, meta=("spline_k", "L_k", "powers", "shape", "lmax", "spline_zero"))


def radial_table(pair_table, cutoff: float, smooth: bool = True) -> RadialTable:
    """RadialTable from one of mlh.gpaw.overlap.OverlapTables' tables (`tables.O[I1, I2]`,
    `tables.P[Ia, I]`) and its cutoff (Bohr); smooth=False skips spline values below
    1e-10 as GPAW's C code does (see `overlap_topology`)."""
    n1, n2 = pair_table.shape
    terms = pair_table.terms
    splines = [spline_coefficients(spline) for _, _, spline, _, _ in terms]
    n_rows = max((c.shape[0] for c, _ in splines), default=1)
    coef = np.zeros((max(len(splines), 1), n_rows, 4))
    dr = np.ones(max(len(splines), 1))
    for t, (c, d) in enumerate(splines):
        coef[t, :len(c)] = c
        dr[t] = d
    spline_k, L_k, columns = [], [], []   # one feature per (term, m)
    for t, (rows, cols, _, l, G) in enumerate(terms):
        m1, m2 = rows.stop - rows.start, cols.stop - cols.start
        flat = ((rows.start + np.arange(m1))[:, None] * n2
                + cols.start + np.arange(m2)).ravel()          # (m1 * m2,) in G's row order
        for m in range(2 * l + 1):
            column = np.zeros(n1 * n2)
            column[flat] = G[:, m]
            spline_k.append(t)
            L_k.append(l * l + m)
            columns.append(column)
    lmax = max((l for *_, l, _ in terms), default=0)
    powers, Y = _monomial_table(lmax)
    M = np.array(columns).reshape(len(columns), n1 * n2)
    return RadialTable(coef=coef, dr=dr, M=M, Y=Y, cutoff=np.asarray(float(cutoff)),
                       spline_k=tuple(spline_k), L_k=tuple(L_k), powers=powers,
                       shape=(int(n1), int(n2)), lmax=int(lmax),
                       spline_zero=0.0 if smooth else _SPLINE_ZERO)


def _safe_norm(R_pv: jax.Array) -> jax.Array:
    """|R| with a zero (not NaN) derivative at R = 0."""
    r2 = jnp.sum(R_pv**2, axis=-1)
    positive = r2 > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, r2, 1.0)), 0.0)


def evaluate_radial_table(table: RadialTable, R_pv: jax.Array) -> jax.Array:
    """(P, n1, n2) two-centre integrals for displacements R_pv (P, 3) in Bohr, as GPAW's
    OverlapExpansion evaluates them; differentiable in R_pv (zero derivative of |R| at 0)."""
    table = jax.tree_util.tree_map(jnp.asarray, table)
    r = _safe_norm(R_pv)
    n_rows = table.coef.shape[1]
    x = jnp.minimum(r[None, :] / table.dr[:, None], n_rows - 1)     # (n_s, P)
    b = jnp.floor(x).astype(jnp.int32)
    u = r[None, :] - b * table.dr[:, None]
    c = table.coef[jnp.arange(b.shape[0])[:, None], b]               # (n_s, P, 4)
    s = c[..., 0] + u * (c[..., 1] + u * (c[..., 2] + u * c[..., 3]))
    if table.spline_zero > 0:
        s = jnp.where(jnp.abs(s) < table.spline_zero, 0.0, s)
    # Monomials x^a y^b z^c by repeated products (no pow: finite derivatives at 0).
    power = [jnp.ones_like(R_pv)]
    for _ in range(table.lmax):
        power.append(power[-1] * R_pv)
    power = jnp.stack(power)                                          # (lmax + 1, P, 3)
    p = np.array(table.powers, np.int64).reshape(-1, 3)
    mono = power[p[:, 0], :, 0] * power[p[:, 1], :, 1] * power[p[:, 2], :, 2]
    rlY = (table.Y.T @ mono)                                          # (nL, P)
    features = (s[np.array(table.spline_k, np.int64)]
                * rlY[np.array(table.L_k, np.int64)])                 # (K, P)
    values = features.T @ table.M
    values = jnp.where((r < table.cutoff)[:, None], values, 0.0)
    return values.reshape(R_pv.shape[0], *table.shape)


# ------------------------------------------------------------------ topology
@dataclass(frozen=True, eq=False)
class _Centres:
    """Chunked two-centre evaluations X(tau_j + R @ cell - tau_i) of one table.

    i, j: (n_chunks, chunk) atoms; shift: (n_chunks, chunk, 3) lattice shifts; padding
    rows are (0, 0, 0) and are cut off (`count` real rows).
    """

    i: np.ndarray
    j: np.ndarray
    shift: np.ndarray
    table: RadialTable
    count: int


register_pytree(_Centres, meta=("count",))


@dataclass(frozen=True, eq=False)
class _Triples:
    """Three-centre products P_e1[n1]^T dO P_e2[n2] added to block group `group` at `target`.

    n1, n2, target: (n_chunks, chunk); padding has target = number of blocks (dropped).
    """

    n1: np.ndarray
    n2: np.ndarray
    target: np.ndarray
    entry1: int
    entry2: int
    group: int


register_pytree(_Triples, meta=("entry1", "entry2", "group"))


@dataclass(frozen=True, eq=False)
class OverlapTopology(SkinnedTopology):
    """Everything about S(R) of one structure that does not depend on the positions.

    A pytree: pass it to jitted functions as an argument (its index arrays become device
    arrays; the group structure is static). Built by `overlap_topology`.

    Attributes:
        positions: (n_atoms, 3) reference positions (Å), wrapped as GPAW wraps them; the
            lattice shifts refer to these, so evaluate at positions moved continuously
            from them.
        cell: (3, 3) lattice vectors as rows (Å), fixed.
        pair_i, pair_j: (n_pairs,) stored pairs (record layout, mlh.record.hamiltonian).
        pair_shift: (n_pairs, 3) integer lattice shifts R.
        blocks: two-centre evaluations per species pair (I1, I2), pairs and on-site blocks.
        entries: projector-orbital evaluations <p^a|phi_i(S)> per species pair (Ia, I).
        dO: (n_entry_groups,) PAW dO^a matrices (ni, ni) of each entry group.
        triples: three-centre products per (Ia, I1, I2).
        pair_gather: (n_pair_values,) index of each S_pair value in the concatenated,
            flattened block groups; onsite_gather likewise for S_onsite (the upper triangle
            points at the lower one, as GPAW mirrors it).
        skin: extra reach (Å): exact while no atom moved more than skin / 2 (`within_skin`).
        n_dropped: three-centre products whose pair is not in the pair list (left out).
        smooth: False if spline values below 1e-10 are skipped as in GPAW.
    """

    positions: np.ndarray
    cell: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_shift: np.ndarray
    blocks: tuple[_Centres, ...]
    entries: tuple[_Centres, ...]
    dO: tuple[np.ndarray, ...]
    triples: tuple[_Triples, ...]
    pair_gather: np.ndarray
    onsite_gather: np.ndarray
    skin: float
    n_dropped: int
    smooth: bool


register_pytree(OverlapTopology, meta=("skin", "n_dropped", "smooth"))


def _chunked(count: int, chunk_size: int, *arrays: np.ndarray,
             fill: int | tuple[int, ...] = 0) -> list[np.ndarray]:
    """Pad arrays (leading axis `count`) to whole chunks and reshape to (n_chunks, chunk, ...)."""
    chunk = max(1, min(chunk_size, count))
    n_chunks = max(1, -(-count // chunk))
    out = []
    for a, f in zip(arrays, fill if isinstance(fill, tuple) else (fill,) * len(arrays)):
        padded = np.full((n_chunks * chunk,) + a.shape[1:], f, dtype=np.int32)
        padded[:count] = a
        out.append(padded.reshape((n_chunks, chunk) + a.shape[1:]))
    return out


def _lookup(keys_i, keys_j, keys_shift, i, j, shift) -> np.ndarray:
    """Index of each (i, j, shift) among the unique keys (keys_i, keys_j, keys_shift), or -1."""
    half = np.abs(np.concatenate([keys_shift, shift])).max(initial=0)
    width = 2 * half + 1
    n = int(max(keys_i.max(initial=0), keys_j.max(initial=0), i.max(initial=0),
                j.max(initial=0))) + 1
    if float(n) ** 2 * float(width) ** 3 >= 2.0**62:
        raise MLHError("too many atoms and lattice shifts for 64-bit block keys")

    def key(a, b, s):
        k = np.asarray(a, np.int64) * n + np.asarray(b, np.int64)
        for d in range(3):
            k = k * width + (s[:, d] + half)
        return k

    reference = key(keys_i, keys_j, keys_shift)
    order = np.argsort(reference)
    if np.any(np.diff(reference[order]) == 0):
        raise MLHError("the pair list has repeated pairs")
    wanted = key(i, j, shift)
    where = np.minimum(np.searchsorted(reference[order], wanted), len(order) - 1)
    found = reference[order][where] == wanted
    return np.where(found, order[where], -1)


def _groups(codes: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(code, members) for each distinct code, members in increasing order."""
    return [(int(c), np.flatnonzero(codes == c)) for c in np.unique(codes)]


def overlap_topology(
    atoms: Atoms,
    tables: OverlapTables,
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    skin: float = 0.0,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    smooth: bool = True,
) -> OverlapTopology:
    """Fix the index lists of S(R) for `atoms` at their current positions (numpy). Not jittable.

    Args:
        atoms: the structure (cell required; positions are wrapped as GPAW wraps them).
        tables: mlh.gpaw.overlap.OverlapTables of the structure's setups (same atom order).
        pairs: (pair_i, pair_j, pair_shift) stored pairs in the record layout, e.g. a
            record's; default: every pair within the reach of GPAW-made records plus skin.
            Three-centre products of pairs not in this list are left out (counted in
            `n_dropped`; negligible for a record's own pair list).
        skin: extra reach (Å) of the pair list and the projector-orbital entries, so the
            topology stays exact while every atom stays within skin / 2 of these positions.
        chunk_size: most blocks, entries or three-centre products evaluated at once.
        smooth: keep every spline term, so S(R) is twice continuously differentiable
            (cubic splines); it then differs from GPAW's S by up to ~5e-7 (4.2e-7 seen
            for WSe2, 1e-7 for SiO2). False: skip spline values below 1e-10 as GPAW's C
            code does: GPAW's S to rounding (~1e-15), but S jumps by up to ~5e-7 where a
            spline tail crosses 1e-10, so finite differences of energies see steps.

    Raises:
        MLHError: setups of other atoms, non-canonical or repeated pairs, bad sizes.
    """
    if chunk_size < 1:
        raise MLHError(f"chunk_size must be positive, got {chunk_size}")
    if skin < 0:
        raise MLHError(f"skin must be >= 0 Å, got {skin}")
    if [int(z) for z, *_ in tables.setups.id_a] != [int(z) for z in atoms.numbers]:
        raise MLHError("the tables' setups do not belong to these atoms")
    positions = wrapped_positions(atoms)
    cell = atoms.cell.array.copy()
    n_atoms = len(atoms)
    type_a = tables.type_a
    n_types = len(tables.setups_I)
    if pairs is None:
        pairs = pair_list(atoms, pair_reach(tables.setups, atoms.numbers) + 0.5 * skin)
    pair_i, pair_j, pair_shift = (np.asarray(p, np.int64) for p in pairs)
    if pair_shift.shape != (len(pair_i), 3) or pair_j.shape != pair_i.shape:
        raise MLHError(f"pairs of shapes {pair_i.shape}, {pair_j.shape}, {pair_shift.shape}")
    if not canonical_pair_mask(pair_i, pair_j, pair_shift).all():
        raise MLHError("pairs must be stored once, as i < j or i == j with R > 0")

    # Blocks: stored pairs, then on-site (i, i, 0); grouped by species pair (I1, I2).
    atoms_idx = np.arange(n_atoms)
    block_i = np.concatenate([pair_i, atoms_idx])
    block_j = np.concatenate([pair_j, atoms_idx])
    block_shift = np.concatenate([pair_shift, np.zeros((n_atoms, 3), np.int64)])
    block_code = type_a[block_i] * n_types + type_a[block_j]
    block_group = np.empty(len(block_i), np.int64)
    block_local = np.empty(len(block_i), np.int64)
    blocks, value_offset = [], [0]
    for g, (code, members) in enumerate(_groups(block_code)):
        I1, I2 = divmod(code, n_types)
        block_group[members] = g
        block_local[members] = np.arange(len(members))
        cutoff = tables.phit_rc_I[I1] + tables.phit_rc_I[I2]
        i, j, s = _chunked(len(members), chunk_size, block_i[members], block_j[members],
                           block_shift[members])
        table = radial_table(tables.O[I1, I2], cutoff, smooth)
        blocks.append(_Centres(i=i, j=j, shift=s, table=table, count=len(members)))
        value_offset.append(value_offset[-1] + len(members) * int(np.prod(table.shape)))

    # Record layout -> concatenated flat groups.
    orbitals = tables.nao_I[type_a]
    sizes = orbitals[block_i] * orbitals[block_j]
    start = np.asarray(value_offset)[block_group] + block_local * sizes
    local = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    block_of_value = np.repeat(np.arange(len(block_i)), sizes)
    n_cols = orbitals[block_j][block_of_value]
    row, col = local // n_cols, local % n_cols
    lower = np.where(block_of_value >= len(pair_i), np.maximum(row, col) * n_cols
                     + np.minimum(row, col), local)          # on-site: mirror lower triangle
    gather = start[block_of_value] + lower
    index_type = np.int32 if len(gather) < 2**31 else np.int64
    n_pair_values = int(sizes[:len(pair_i)].sum())

    # Projector-orbital entries and three-centre products.
    a_n, i_n, S_n, _ = tables.paw_neighbours(positions, cell, atoms.pbc, skin)
    entry_code = type_a[a_n] * n_types + type_a[i_n]
    entry_group = np.empty(len(a_n), np.int64)
    entry_local = np.empty(len(a_n), np.int64)
    entries, dO = [], []
    for e, (code, members) in enumerate(_groups(entry_code)):
        Ia, I = divmod(code, n_types)
        entry_group[members] = e
        entry_local[members] = np.arange(len(members))
        cutoff = tables.pt_rc_I[Ia] + tables.phit_rc_I[I]
        a, i, s = _chunked(len(members), chunk_size, a_n[members], i_n[members], S_n[members])
        table = radial_table(tables.P[Ia, I], cutoff, smooth)
        entries.append(_Centres(i=a, j=i, shift=s, table=table, count=len(members)))
        dO.append(tables.dO_I[Ia])

    n1, n2 = same_atom_entry_pairs(np.bincount(a_n, minlength=n_atoms))
    i1, i2, shift = i_n[n1], i_n[n2], S_n[n2] - S_n[n1]
    stored = canonical_pair_mask(i1, i2, shift) | (n1 == n2)
    n1, n2, i1, i2, shift = n1[stored], n2[stored], i1[stored], i2[stored], shift[stored]
    target = _lookup(block_i, block_j, block_shift, i1, i2, shift)
    n_dropped = int(np.sum(target < 0))
    keep = target >= 0
    n1, n2, target = n1[keep], n2[keep], target[keep]
    triples = []
    triple_code = (entry_group[n1] * len(entries) + entry_group[n2]) if len(n1) else n1
    for code, members in _groups(triple_code):
        e1, e2 = divmod(code, len(entries))
        g = int(block_group[target[members[0]]])
        t1, t2, tt = _chunked(len(members), chunk_size, entry_local[n1[members]],
                              entry_local[n2[members]], block_local[target[members]],
                              fill=(0, 0, blocks[g].count))
        triples.append(_Triples(n1=t1, n2=t2, target=tt, entry1=e1, entry2=e2, group=g))

    return OverlapTopology(
        positions=positions, cell=cell, pair_i=pair_i, pair_j=pair_j, pair_shift=pair_shift,
        blocks=tuple(blocks), entries=tuple(entries), dO=tuple(dO), triples=tuple(triples),
        pair_gather=gather[:n_pair_values].astype(index_type),
        onsite_gather=gather[n_pair_values:].astype(index_type),
        skin=float(skin), n_dropped=n_dropped, smooth=bool(smooth))


# ------------------------------------------------------------------ evaluation
def _evaluate_centres(centres: _Centres, positions: jax.Array, cell: jax.Array) -> jax.Array:
    """(count, n1, n2) table values at tau_j + R @ cell - tau_i (positions, cell in Bohr)."""

    def chunk(args):
        i, j, shift = args
        R_pv = positions[j] + shift.astype(positions.dtype) @ cell - positions[i]
        return evaluate_radial_table(centres.table, R_pv)

    if centres.i.shape[0] == 1:   # one chunk: no loop, no remat (faster to compile)
        return chunk((centres.i[0], centres.j[0], centres.shift[0]))[:centres.count]
    values = jax.lax.map(jax.checkpoint(chunk), (centres.i, centres.j, centres.shift))
    return values.reshape((-1,) + values.shape[2:])[:centres.count]


def _add_triples(block_values: jax.Array, triples: _Triples, P: jax.Array,
                 DP: jax.Array) -> jax.Array:
    """block_values[target] += P[n1]^T DP[n2], chunk by chunk (padding dropped)."""

    def products(n1, n2):
        return jnp.einsum("tim,tin->tmn", P[n1], DP[n2])

    if triples.n1.shape[0] == 1:  # one chunk: no loop, no remat (faster to compile)
        values = products(triples.n1[0], triples.n2[0])
        return block_values.at[triples.target[0]].add(values, mode="drop")

    def step(values, chunk):
        n1, n2, target = chunk
        return values.at[target].add(jax.checkpoint(products)(n1, n2), mode="drop"), None

    values, _ = jax.lax.scan(step, block_values, (triples.n1, triples.n2, triples.target))
    return values


@jax.jit
def overlap_blocks_jax(
    positions: jax.Array, topology: OverlapTopology
) -> tuple[jax.Array, jax.Array]:
    """S(R) blocks of the topology's structure at `positions`, differentiable in positions.

    S_pair[p] = <phi_i | phi_j(R)> + sum_a P^a_i^T dO^a P^a_j(R) for the stored pairs, and the
    on-site blocks likewise (record layout, mlh.record.hamiltonian). Jitted (compiled once per topology
    structure; inlined when called inside another jitted function); equal to
    mlh.gpaw.overlap.OverlapTables.blocks (and GPAW) to rounding with `smooth=False`, to ~5e-7
    otherwise (see `overlap_topology`).

    Args:
        positions: (n_atoms, 3) Cartesian positions (Å), moved continuously from
            `topology.positions` (the lattice shifts refer to those images).
        topology: from `overlap_topology`.

    Returns:
        S_pair (n_pair_values,) and S_onsite (n_onsite_values,), dimensionless.
    """
    require_x64("physics.band.overlap")
    if positions.shape != (topology.n_atoms, 3):
        raise MLHError(f"positions have shape {positions.shape}, expected "
                       f"({topology.n_atoms}, 3)")
    topology = jax.tree_util.tree_map(jnp.asarray, topology)
    pos = jnp.asarray(positions, jnp.float64) / Bohr
    cell = jnp.asarray(topology.cell, jnp.float64) / Bohr
    values = [_evaluate_centres(group, pos, cell) for group in topology.blocks]
    P = [_evaluate_centres(group, pos, cell) for group in topology.entries]
    DP = [jnp.einsum("ij,njm->nim", dO, p) for dO, p in zip(topology.dO, P)]
    for t in topology.triples:
        values[t.group] = _add_triples(values[t.group], t, P[t.entry1], DP[t.entry2])
    flat = jnp.concatenate([v.reshape(-1) for v in values])
    return flat[topology.pair_gather], flat[topology.onsite_gather]


def _summed(W: jax.Array, n_values: int, name: str) -> jax.Array:
    W = jnp.asarray(W)
    if W.shape[-1:] != (n_values,):
        raise MLHError(f"{name} has shape {W.shape}, expected (..., {n_values})")
    return W.sum(axis=tuple(range(W.ndim - 1)))


@jax.jit
def overlap_trace(
    W_pair: jax.Array, W_onsite: jax.Array, positions: jax.Array, topology: OverlapTopology
) -> jax.Array:
    """Tr[W S(R)] = sum_a <W_a, S_a> + 2 sum_p <W_p, S_p> (record layout; see
    physics.density_matrix.density_matrix_blocks). W: (..., n_values), leading axes (spin)
    summed. Jitted; eV for W in eV."""
    S_pair, S_onsite = overlap_blocks_jax(positions, topology)
    W_pair = _summed(W_pair, S_pair.shape[0], "W_pair")
    W_onsite = _summed(W_onsite, S_onsite.shape[0], "W_onsite")
    return jnp.dot(W_onsite, S_onsite) + 2.0 * jnp.dot(W_pair, S_pair)


@jax.jit
def _overlap_force_term(W_pair, W_onsite, positions, topology):
    S, vjp = jax.vjp(lambda p: overlap_blocks_jax(p, topology), positions)
    W_pair = _summed(W_pair, S[0].shape[0], "W_pair")
    W_onsite = _summed(W_onsite, S[1].shape[0], "W_onsite")
    (grad,) = vjp((2.0 * W_pair, W_onsite))
    return grad


def overlap_force_term(
    W_pair: jax.Array, W_onsite: jax.Array, positions: jax.Array, topology: OverlapTopology
) -> jax.Array:
    """The overlap part of the forces, F^S_a = +Tr[W dS/dR_a] = d/dR_a Tr[W S(R)] (W fixed).

    With the band free energy A and dA = Tr[rho dH] - Tr[W dS] (density matrices fixed),
    the forces are F_a = -Tr[rho dH/dR_a] + F^S_a. One jax.vjp of `overlap_blocks_jax`
    with cotangent (2 W_pair, W_onsite); jitted (compiled once per topology shape).

    Args:
        W_pair, W_onsite: energy-weighted density matrix blocks (eV) in the record layout,
            (n_spins, n_values) or (n_values,), e.g. from
            physics.density_matrix.density_matrix_blocks(..., energy_weighted=True).
        positions: (n_atoms, 3) positions (Å), as for `overlap_blocks_jax`.
        topology: from `overlap_topology`.

    Returns:
        (n_atoms, 3) force contributions (eV/Å).
    """
    require_x64("physics.band.overlap")
    return _overlap_force_term(jnp.asarray(W_pair, jnp.float64),
                               jnp.asarray(W_onsite, jnp.float64),
                               jnp.asarray(positions, jnp.float64), topology)
