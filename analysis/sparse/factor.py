"""Sparse symmetric LDLᵀ factorization with Sylvester inertia, for atom-blocked matrices.

A real symmetric matrix A (n × n, sparse) whose rows and columns come in atom blocks
(an atom's orbitals are consecutive) is factorized as

    A[order][:, order] = L D Lᵀ,

L unit lower block-triangular, D block diagonal with dense symmetric blocks of at most
`BLOCK` rows, without pivoting between blocks. By Sylvester's law of inertia A and D have
the same numbers of negative, zero and positive eigenvalues; for A = H - σS with S
positive definite, the number of negative eigenvalues of A is the number of generalized
eigenvalues of (H, S) below σ.

The method is multifrontal. The ordering is a METIS nested dissection of the atom graph
(pymetis), weighted by orbital counts, followed by a postorder of the elimination tree;
supernodes are chains of atoms with nested column structure, amalgamated while that adds
few zeros. Each supernode's front is a dense matrix: its orbitals' columns of A plus the
update matrices of its children; its columns are eliminated with dense BLAS-3 products
and its Schur complement passes to its parent. Nothing of size n × n is ever formed.

`symbolic_factor` depends only on the sparsity pattern; `factorize` on the values (once
per shift σ for the same pattern).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymetis
import scipy.linalg
import scipy.sparse as sp

from mlh.errors import MLHError

__all__ = ["BLOCK", "SymbolicFactor", "LDLFactor", "symbolic_factor", "factorize",
           "SingularPivotError"]

BLOCK = 64
"""Largest dense diagonal block of D (orbitals); small, so that LAPACK's Bunch-Kaufman
factorization of a block stays fast even when BLAS threads compete for cores."""

PANEL = 256
"""Columns eliminated between two BLAS-3 updates of the rest of a front."""

_UPDATE_COLUMNS = 1024
"""Column chunk of the trailing update (only the lower block triangle is computed)."""

RELAXED_ZEROS = 0.1
"""Amalgamation: merge a supernode into its parent while the explicit zeros this adds stay
below this fraction of the merged supernode's entries (fewer, larger fronts: less
extend-add traffic for ~5 % more flops)."""

PIVOT_TOLERANCE = 1e-12
"""A pivot of D (eigenvalue of a Bunch-Kaufman 1 × 1 or 2 × 2 block) below this times the
largest |A| entry counts as zero: SingularPivotError."""


class SingularPivotError(MLHError):
    """A diagonal block of D is (numerically) singular: A has no stable LDLᵀ at this shift."""


@dataclass(frozen=True, eq=False)
class SymbolicFactor:
    """Ordering, supernodes and assembly maps of one sparsity pattern.

    Attributes:
        n: matrix size.
        order: (n,) permuted position -> original row index.
        starts: (n_super + 1,) first permuted row of each supernode.
        fronts: per supernode, the permuted rows of its front (its own rows, then its
            update rows, sorted).
        children: per supernode, its child supernodes.
        child_runs: per supernode and child, (child_start, length, front_start) triples:
            runs of the child's update rows that are consecutive rows of this front.
        entry_slices: per supernode, the range of `entry_value` and `entry_flat` holding
            the lower-triangle entries of its columns.
        entry_value: index into the pattern's CSR data of each lower-triangle entry.
        entry_flat: flat (row-major) index of each entry in its front, ascending.
        nnz_pattern: entries of the pattern.
    """

    n: int
    order: np.ndarray
    starts: np.ndarray
    fronts: list[np.ndarray]
    children: list[list[int]]
    child_runs: list[list[np.ndarray]]
    entry_slices: np.ndarray
    entry_value: np.ndarray
    entry_flat: np.ndarray
    nnz_pattern: int

    @property
    def n_supernodes(self) -> int:
        return len(self.fronts)

    @property
    def factor_entries(self) -> int:
        """Stored entries of L and D (memory of a factorization: 8 bytes each)."""
        own = np.diff(self.starts)
        return int(sum(k * (len(f) - k) + k * k for k, f in zip(own, self.fronts)))


# ------------------------------------------------------------------ symbolic phase
def _nested_dissection(graph: sp.csr_matrix, weights: np.ndarray) -> np.ndarray:
    """METIS nested-dissection order (position -> vertex) of a symmetric graph."""
    graph = graph.tocsr().copy()
    graph.setdiag(0)
    graph.eliminate_zeros()
    if graph.nnz == 0:
        return np.arange(graph.shape[0])
    order, _ = pymetis.nested_dissection(
        pymetis.CSRAdjacency(graph.indptr.astype(np.int64), graph.indices.astype(np.int64)),
        vweights=np.asarray(weights, dtype=np.int64),
    )
    return np.asarray(order, dtype=np.int64)


def _elimination_tree(lower: sp.csr_matrix) -> np.ndarray:
    """Parent of each column in the elimination tree of a matrix with this lower pattern."""
    n = lower.shape[0]
    parent = np.full(n, -1, dtype=np.int64)
    ancestor = np.full(n, -1, dtype=np.int64)
    indptr, indices = lower.indptr, lower.indices
    for j in range(n):
        for i in indices[indptr[j]:indptr[j + 1]]:
            while i != -1 and i < j:
                following = ancestor[i]
                ancestor[i] = j
                if following == -1:
                    parent[i] = j
                i = following
    return parent


def _postorder(parent: np.ndarray) -> np.ndarray:
    """A postorder (position -> vertex) of a forest, children in increasing order."""
    n = len(parent)
    children: list[list[int]] = [[] for _ in range(n)]
    roots = []
    for v in range(n):
        (children[parent[v]] if parent[v] >= 0 else roots).append(v)
    order, stack = [], [(r, False) for r in reversed(roots)]
    while stack:
        v, expanded = stack.pop()
        if expanded:
            order.append(v)
        else:
            stack.append((v, True))
            stack.extend((c, False) for c in reversed(children[v]))
    return np.asarray(order, dtype=np.int64)


def _column_structures(lower: sp.csr_matrix, parent: np.ndarray) -> list[np.ndarray]:
    """Rows below the diagonal of every column of L (postordered lower pattern, by rows)."""
    n = lower.shape[0]
    upper = lower.T.tocsr()  # row j of upper: the rows i > j with A[i, j] != 0
    gathered: list[list[np.ndarray]] = [[] for _ in range(n)]
    structures = []
    for j in range(n):
        own = upper.indices[upper.indptr[j]:upper.indptr[j + 1]]
        parts = [own[own > j], *gathered[j]]
        rows = np.unique(np.concatenate(parts)) if len(parts) > 1 else np.sort(parts[0])
        rows = rows[rows > j]
        structures.append(rows)
        if parent[j] >= 0:
            gathered[parent[j]].append(rows)
        gathered[j] = []
    return structures


def _supernodes(parent: np.ndarray, structures: list[np.ndarray], sizes: np.ndarray
                ) -> list[tuple[int, int]]:
    """Atom ranges [first, stop) of the amalgamated supernodes (postordered atoms)."""
    n = len(parent)
    # Fundamental chains: j joins j + 1 when j + 1 is its parent and the structures nest.
    ranges: list[list[int]] = []
    for j in range(n):
        if ranges and parent[j - 1] == j and len(structures[j - 1]) == len(structures[j]) + 1:
            ranges[-1][1] = j + 1
        else:
            ranges.append([j, j + 1])
    # Relaxed amalgamation: merge a supernode into the next one when that is its parent,
    # as long as the merged front stays mostly non-zero.
    orbital_start = np.concatenate([[0], np.cumsum(sizes)])
    merged: list[list[int]] = []
    zeros: list[float] = []
    for first, stop in ranges:
        if merged and parent[merged[-1][1] - 1] == first:
            child_first, child_stop = merged[-1]
            own_child = orbital_start[child_stop] - orbital_start[child_first]
            own = orbital_start[stop] - orbital_start[first]
            below = int(sizes[structures[stop - 1]].sum())
            child_below = int(sizes[structures[child_stop - 1]].sum())
            new_zeros = own_child * (own + below - child_below)
            total = own_child + own
            entries = total * (total + 2 * below) / 2
            fraction = (zeros[-1] + new_zeros) / entries
            if fraction < RELAXED_ZEROS:
                merged[-1][1] = stop
                zeros[-1] += new_zeros
                continue
        merged.append([first, stop])
        zeros.append(0.0)
    return [(a, b) for a, b in merged]


def _runs(positions: np.ndarray) -> np.ndarray:
    """(start, length, value at start) of the runs of consecutive integers in `positions`."""
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    first = np.concatenate([[0], breaks])
    length = np.diff(np.concatenate([first, [len(positions)]]))
    return np.stack([first, length, positions[first]], axis=1)


def symbolic_factor(pattern: sp.csr_matrix, atom_sizes: np.ndarray,
                    atom_graph: sp.csr_matrix) -> SymbolicFactor:
    """Ordering and supernodal structure for matrices with `pattern`.

    Args:
        pattern: (n, n) CSR matrix with sorted indices and a symmetric pattern; the
            numeric phase takes values aligned with its `data`.
        atom_sizes: (n_atoms,) rows of each atom; atom a owns rows
            sum(atom_sizes[:a]) ... sum(atom_sizes[:a + 1]) - 1.
        atom_graph: (n_atoms, n_atoms) symmetric pattern: atoms a, b share a non-zero block.

    Returns:
        The SymbolicFactor shared by every factorization of this pattern.
    """
    n = pattern.shape[0]
    atom_sizes = np.asarray(atom_sizes, dtype=np.int64)
    if atom_sizes.sum() != n or pattern.shape != (n, n):
        raise MLHError(f"atom sizes sum to {atom_sizes.sum()} but the matrix is {pattern.shape}")
    atom_order = _nested_dissection(atom_graph, atom_sizes)
    graph = atom_graph.tocsr()[atom_order][:, atom_order]
    lower = sp.tril(graph, format="csr")
    post = _postorder(_elimination_tree(lower))
    atom_order = atom_order[post]
    graph = atom_graph.tocsr()[atom_order][:, atom_order]
    lower = sp.tril(graph, format="csr")
    parent = _elimination_tree(lower)
    structures = _column_structures(lower, parent)
    sizes = atom_sizes[atom_order]
    ranges = _supernodes(parent, structures, sizes)

    atom_start = np.concatenate([[0], np.cumsum(atom_sizes)])
    order = np.concatenate([np.arange(atom_start[a], atom_start[a + 1]) for a in atom_order])
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    new_start = np.concatenate([[0], np.cumsum(sizes)])
    starts = np.array([new_start[a] for a, _ in ranges] + [n], dtype=np.int64)

    atom_to_super = np.empty(len(sizes), dtype=np.int64)
    for s, (a, b) in enumerate(ranges):
        atom_to_super[a:b] = s
    fronts, children = [], [[] for _ in ranges]
    for s, (a, b) in enumerate(ranges):
        below = structures[b - 1]
        rows = [np.arange(new_start[a], new_start[b])]
        rows += [np.arange(new_start[c], new_start[c + 1]) for c in below]
        fronts.append(np.concatenate(rows))
        if parent[b - 1] >= 0:
            children[atom_to_super[parent[b - 1]]].append(s)
    child_runs = [[_runs(np.searchsorted(fronts[s], fronts[c][starts[c + 1] - starts[c]:]))
                   for c in children[s]] for s in range(len(ranges))]

    # Lower-triangle entries of the permuted pattern, grouped by supernode of their column.
    coo = pattern.tocoo()
    row, col = position[coo.row], position[coo.col]
    keep = np.flatnonzero(row >= col)
    row, col = row[keep], col[keep]
    column_super = np.searchsorted(starts, col, side="right") - 1
    by_super = np.argsort(column_super, kind="stable")
    keep, row, col = keep[by_super], row[by_super], col[by_super]
    column_super = column_super[by_super]
    bounds = np.searchsorted(column_super, np.arange(len(ranges) + 1))
    entry_flat = np.empty(len(keep), dtype=np.int64)
    for s in range(len(ranges)):
        sl = slice(bounds[s], bounds[s + 1])
        local = np.searchsorted(fronts[s], row[sl])
        if np.any(fronts[s][np.minimum(local, len(fronts[s]) - 1)] != row[sl]):
            raise MLHError("the matrix pattern has entries outside the atom graph")
        flat = local * len(fronts[s]) + (col[sl] - starts[s])
        ascending = np.argsort(flat)
        entry_flat[sl] = flat[ascending]
        keep[sl] = keep[sl][ascending]
    return SymbolicFactor(
        n=n, order=order, starts=starts, fronts=fronts, children=children,
        child_runs=child_runs, entry_slices=bounds, entry_value=keep.astype(np.int64),
        entry_flat=entry_flat, nnz_pattern=pattern.nnz,
    )


# ------------------------------------------------------------------ numeric phase
@dataclass(frozen=True, eq=False)
class _Supernode:
    """The factor's columns of one supernode.

    Attributes:
        first: first permuted row of the supernode; it owns rows first ... first + own - 1.
        rows_below: (m - own,) permuted rows of L below the supernode.
        L: (m, own) columns of L: rows first ... first + own - 1 (unit lower triangular
            by blocks, the diagonal blocks left as zeros), then rows_below.
        D_inv: (start, stop, D⁻¹) of each diagonal block, rows relative to `first`.
    """

    first: int
    rows_below: np.ndarray
    L: np.ndarray
    D_inv: list[tuple[int, int, np.ndarray]]


@dataclass(frozen=True, eq=False)
class LDLFactor:
    """A numeric LDLᵀ factorization; `solve` applies A⁻¹.

    Attributes:
        n_negative, n_positive: inertia of A (eigenvalues < 0, > 0; a zero eigenvalue raises
            SingularPivotError instead).
        smallest_pivot: smallest |pivot| of D, relative to max |A|.
    """

    symbolic: SymbolicFactor
    supernodes: list[_Supernode]
    n_negative: int
    n_positive: int
    smallest_pivot: float

    def solve(self, B: np.ndarray) -> np.ndarray:
        """A⁻¹ B for B of shape (n,) or (n, k)."""
        order = self.symbolic.order
        X = np.array(B[order].reshape(len(order), -1), dtype=float)
        for node in self.supernodes:  # L y = b
            own = node.L.shape[1]
            x = X[node.first:node.first + own]
            for b0, b1, _ in node.D_inv[:-1]:
                x[b1:] -= node.L[b1:own, b0:b1] @ x[b0:b1]
            X[node.rows_below] -= node.L[own:] @ x
        for node in self.supernodes:  # D z = y
            for b0, b1, D_inv in node.D_inv:
                X[node.first + b0:node.first + b1] = D_inv @ X[node.first + b0:node.first + b1]
        for node in reversed(self.supernodes):  # Lᵀ x = z
            own = node.L.shape[1]
            x = X[node.first:node.first + own]
            x -= node.L[own:].T @ X[node.rows_below]
            for b0, b1, _ in reversed(node.D_inv[:-1]):
                x[b0:b1] -= node.L[b1:own, b0:b1].T @ x[b1:]
        out = np.empty_like(X)
        out[order] = X
        return out[:, 0] if B.ndim == 1 else out


def _inverse_and_inertia(D: np.ndarray) -> tuple[np.ndarray, int, float]:
    """D⁻¹, the number of negative eigenvalues of D and its smallest |pivot| (Bunch-Kaufman).

    D = P L B Lᵀ Pᵀ with B block diagonal (1 × 1 and 2 × 2 blocks), so D and B have the
    same inertia; the eigenvalues of B's blocks are the pivots.
    """
    factor, ipiv, info = scipy.linalg.lapack.dsytrf(D, lower=1)
    if info < 0:
        raise MLHError(f"dsytrf failed (info {info})")
    pivots = np.diag(factor).copy()
    k = 0
    while k < len(pivots):
        if ipiv[k] < 0:  # 2 × 2 block at rows k, k + 1: its two eigenvalues
            a, b, c = pivots[k], factor[k + 1, k], pivots[k + 1]
            mean, radius = (a + c) / 2, np.hypot((a - c) / 2, b)
            pivots[k], pivots[k + 1] = mean - radius, mean + radius
            k += 2
        else:
            k += 1
    if info > 0:  # an exactly zero pivot: the caller raises SingularPivotError
        return D, 0, 0.0
    inverse, info = scipy.linalg.lapack.dsytri(factor, ipiv, lower=1)
    inverse = np.tril(inverse) + np.tril(inverse, -1).T
    return inverse, int(np.count_nonzero(pivots < 0)), float(np.abs(pivots).min())


def _eliminate(F: np.ndarray, own: int, tolerance: float
               ) -> tuple[np.ndarray, list[tuple[int, int, np.ndarray]], int, float]:
    """Eliminate the first `own` rows and columns of the symmetric front F, in place.

    Only the lower triangle of F is read or kept up to date. Afterwards the lower triangle
    of F[own:, own:] holds the Schur complement. Columns go in panels of `PANEL`, each in
    diagonal blocks of at most `BLOCK`; the trailing matrix is updated once per panel
    (BLAS-3, lower block triangle only).

    Returns:
        L (m, own) (see `_Supernode`), (start, stop, D⁻¹) per diagonal block, the number
        of negative pivots and the smallest |pivot|.
    """
    m = len(F)
    L = np.zeros((m, own))
    D_inv_blocks, negative, smallest = [], 0, np.inf
    for p0 in range(0, own, PANEL):
        p1 = min(p0 + PANEL, own)
        for b0 in range(p0, p1, BLOCK):
            b1 = min(b0 + BLOCK, p1)
            D_inv, n_negative, pivot = _inverse_and_inertia(F[b0:b1, b0:b1])
            if pivot <= tolerance:
                raise SingularPivotError(
                    f"a pivot block of the LDLT factorization is singular (|pivot| {pivot:.3g})"
                )
            negative += n_negative
            smallest = min(smallest, pivot)
            P = F[b1:, b0:b1]
            L[b1:, b0:b1] = P @ D_inv
            if b1 < p1:
                F[b1:, b1:p1] -= L[b1:, b0:b1] @ P[: p1 - b1].T
            D_inv_blocks.append((b0, b1, D_inv))
        if p1 < m:
            L_panel, P_panel = L[p1:, p0:p1], F[p1:, p0:p1]
            for c0 in range(p1, m, _UPDATE_COLUMNS):
                c1 = min(c0 + _UPDATE_COLUMNS, m)
                F[c0:, c0:c1] -= L_panel[c0 - p1:] @ P_panel[c0 - p1: c1 - p1].T
    return L, D_inv_blocks, negative, smallest


def _extend_add(F: np.ndarray, update: np.ndarray, runs: np.ndarray) -> None:
    """F[where, where] += update on the lower block triangle, by runs of consecutive rows."""
    for i, (a0, a_len, fa) in enumerate(runs):
        for b0, b_len, fb in runs[: i + 1]:
            F[fa:fa + a_len, fb:fb + b_len] += update[a0:a0 + a_len, b0:b0 + b_len]


def factorize(symbolic: SymbolicFactor, values: np.ndarray) -> LDLFactor:
    """LDLᵀ of the matrix with the analysed pattern and CSR `values`.

    Raises:
        SingularPivotError: a diagonal block of D is singular to working precision (the
            shift is an eigenvalue of a Schur complement); shift slightly and retry.
    """
    values = np.asarray(values, dtype=float)
    if values.shape != (symbolic.nnz_pattern,):
        raise MLHError(f"{values.shape} values for a pattern of {symbolic.nnz_pattern} entries")
    scale = float(np.abs(values).max(initial=0.0)) or 1.0
    pending: dict[int, np.ndarray] = {}
    supernodes: list[_Supernode] = []
    negative, smallest = 0, np.inf
    for s, rows in enumerate(symbolic.fronts):
        first = int(symbolic.starts[s])
        own = int(symbolic.starts[s + 1]) - first
        F = np.zeros((len(rows), len(rows)))
        entries = slice(symbolic.entry_slices[s], symbolic.entry_slices[s + 1])
        F.ravel()[symbolic.entry_flat[entries]] = values[symbolic.entry_value[entries]]
        for child, runs in zip(symbolic.children[s], symbolic.child_runs[s]):
            _extend_add(F, pending.pop(child), runs)
        L, D_inv, front_negative, front_smallest = _eliminate(F, own, PIVOT_TOLERANCE * scale)
        negative += front_negative
        smallest = min(smallest, front_smallest / scale)
        supernodes.append(_Supernode(first, rows[own:], L, D_inv))
        if len(rows) > own:
            pending[s] = F[own:, own:]  # a view: no copy of the largest arrays
    return LDLFactor(symbolic, supernodes, negative, symbolic.n - negative, smallest)
