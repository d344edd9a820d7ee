"""Hamiltonian blocks in direct-sum (irreps) form, laid out as e3x features.

A block H_ij between atoms i and j (rows: orbitals of i, columns: orbitals of j, any
unit, e.g. eV) is a grid of (l_i, l_j) sub-blocks, one per pair (radial function a of
i, radial function b of j), each of shape (2l_i+1, 2l_j+1) with orbitals in the order
m = -l..l (GPAW's and e3x's order for real spherical harmonics, see docs/irreps.md).

Clebsch-Gordan coupling turns a sub-block into the direct sum of irreps of degree
L = |l_i-l_j|..l_i+l_j, all of parity (-1)^(l_i+l_j). They are stored in an e3x
O(3) feature array of shape (2, (max_degree+1)^2, n_features): axis 0 is e3x's parity
index (0 even, 1 odd), axis 1 the degree/order index L^2+L+M, axis 2 the feature.
Beware: e3x's own default is Cartesian order (e3x.Config.cartesian_order is True); the
network producing the features must use the layout's `cartesian_order` (default False). Following GEARS H
(supplementary S4) each sub-block, visited row-major over (a, b), takes the first
feature whose channels (parity, L) for all its degrees are still free.

Rotations: if positions r become R r (an (n, 3) array `pos` becomes `pos @ R.T`),
blocks become D_i H_ij D_j^T with D = `wigner_d_orbitals(R, ls)`, and every irrep x of
degree L becomes W_L(R) x with W = e3x.so3.wigner_d(R) (the same matrices).

All arrays here are numpy float64; e3x is called inside `jax.enable_x64(True)`, a
thread-local context, so no JAX or e3x global configuration is touched.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from itertools import accumulate, count

import e3x
import jax
import numpy as np
import scipy.linalg

from mlh.errors import MLHError
from mlh.record.basis import MAX_ANGULAR_MOMENTUM

__all__ = [
    "EVEN",
    "ODD",
    "coupling_matrix",
    "SubBlockSlot",
    "IrrepsLayout",
    "block_to_irreps",
    "irreps_to_block",
    "blocks_to_irreps",
    "irreps_to_blocks",
    "wigner_d_orbitals",
]

EVEN = 0
"""e3x parity index of even irreps (features[..., 0, :, :])."""
ODD = 1
"""e3x parity index of odd irreps (features[..., 1, :, :])."""

_ORTHOGONALITY_TOLERANCE = 1e-12
_ROTATION_TOLERANCE = 1e-6

# jit-compiled once: eager e3x.so3.wigner_d dispatches many small ops (seconds per call).
_wigner_d = jax.jit(e3x.so3.wigner_d, static_argnums=(1, 2))


def _check_ls(ls: Sequence[int]) -> tuple[int, ...]:
    """Validated angular momenta as a tuple of ints (each in 0..3, at least one)."""
    ls = tuple(operator.index(l) for l in ls)
    if not ls:
        raise MLHError("a species needs at least one radial function, got ls=()")
    bad = [l for l in ls if not 0 <= l <= MAX_ANGULAR_MOMENTUM]
    if bad:
        raise MLHError(
            f"angular momenta {bad} are not supported: mlh.model.irreps handles "
            f"l = 0..{MAX_ANGULAR_MOMENTUM} (s, p, d, f)"
        )
    return ls


def _check_shape(array: np.ndarray, expected: tuple[int, ...], what: str) -> None:
    """Raise MLHError unless `array` has shape `expected`."""
    if array.shape != expected:
        raise MLHError(f"{what} must have shape {expected}, got {array.shape}")


def _check_batched_shape(array: np.ndarray, item_shape: tuple[int, ...], what: str) -> int:
    """Number N of items after checking that `array` has shape (N, *item_shape)."""
    if array.shape[1:] != item_shape or array.ndim != len(item_shape) + 1:
        expected = ", ".join(["N", *map(str, item_shape)])
        raise MLHError(f"{what} must have shape ({expected}), got {array.shape}")
    return array.shape[0]


def _as_real(array: np.ndarray, what: str) -> np.ndarray:
    """`array` as float64, refusing complex input rather than dropping its imaginary part."""
    array = np.asarray(array)
    if np.iscomplexobj(array):
        raise MLHError(f"{what} must be real, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _cartesian_order(degree: int) -> np.ndarray:
    """Positions (m + L) of e3x's Cartesian order M = L, -L, L-1, -(L-1), ..., 0."""
    ms = [m for k in range(degree, 0, -1) for m in (k, -k)] + [0]
    return np.array(ms, dtype=int) + degree


def _degrees(l_i: int, l_j: int) -> range:
    """Degrees L of the irreps in the coupled product l_i ⊗ l_j."""
    return range(abs(l_i - l_j), l_i + l_j + 1)


@cache
def _clebsch_gordan_table() -> np.ndarray:
    """e3x's Clebsch-Gordan coefficients C[l1^2+l1+m1, l2^2+l2+m2, L^2+L+M], l1, l2 <= 3."""
    with jax.enable_x64(True):
        table = e3x.so3.clebsch_gordan(
            MAX_ANGULAR_MOMENTUM, MAX_ANGULAR_MOMENTUM, 2 * MAX_ANGULAR_MOMENTUM,
            cartesian_order=False,
        )
    return np.asarray(table, dtype=np.float64)


@cache
def coupling_matrix(l_i: int, l_j: int, cartesian_order: bool = False) -> np.ndarray:
    """Orthogonal Clebsch-Gordan matrix from an (l_i, l_j) sub-block to its irreps.

    Row L^2 - L_min^2 + k of the result holds e3x's coefficients C[m_i, m_j, M_k]
    (as e3x.so3.clebsch_gordan_for_degrees(l_i, l_j, L, cartesian_order=False))
    flattened over (m_i, m_j) row-major, so `irreps = Q @ sub_block.ravel()` and
    `sub_block = (Q.T @ irreps).reshape(2l_i+1, 2l_j+1)`. e3x's coefficients are
    already orthonormal (sum over m_i, m_j of C C = δ_MM'); this is checked, not assumed.

    Args:
        l_i: angular momentum of the row orbitals (0..3).
        l_j: angular momentum of the column orbitals (0..3).
        cartesian_order: order the components M of each irrep as e3x's Cartesian
            order (M = L, -L, L-1, ..., 0) instead of M = -L..L. Orbitals always use
            m = -l..l.

    Returns:
        Read-only float64 array of shape ((2l_i+1)(2l_j+1), (2l_i+1)(2l_j+1)); rows
        are the irreps L = |l_i-l_j|..l_i+l_j concatenated, 2L+1 components each.

    Raises:
        MLHError: l_i or l_j outside 0..3, or e3x's coefficients are not orthonormal.
    """
    l_i, l_j = _check_ls((l_i, l_j))
    size = (2 * l_i + 1) * (2 * l_j + 1)
    table = _clebsch_gordan_table()[l_i**2 : (l_i + 1) ** 2, l_j**2 : (l_j + 1) ** 2]
    rows = []
    for degree in _degrees(l_i, l_j):
        rows_l = table[:, :, degree**2 : (degree + 1) ** 2].reshape(size, 2 * degree + 1).T
        rows.append(rows_l[_cartesian_order(degree)] if cartesian_order else rows_l)
    q = np.concatenate(rows, axis=0)
    deviation = np.abs(q @ q.T - np.eye(size)).max()
    if deviation > _ORTHOGONALITY_TOLERANCE:
        raise MLHError(
            f"e3x Clebsch-Gordan matrix for ({l_i}, {l_j}) is not orthogonal "
            f"(max |QQ^T - 1| = {deviation:.1e}); e3x's normalisation changed"
        )
    q.flags.writeable = False
    return q


@dataclass(frozen=True)
class SubBlockSlot:
    """Where one (l_i, l_j) sub-block sits in the block and in the irreps array.

    Attributes:
        radial_i: index of the radial function of atom i (row species).
        radial_j: index of the radial function of atom j (column species).
        l_i: its angular momentum.
        l_j: angular momentum of radial_j.
        row_offset: first block row of the sub-block.
        col_offset: first block column of the sub-block.
        parity: e3x parity index, (l_i + l_j) % 2 (EVEN or ODD).
        feature: feature index (last axis of the irreps array).
    """

    radial_i: int
    radial_j: int
    l_i: int
    l_j: int
    row_offset: int
    col_offset: int
    parity: int
    feature: int

    @property
    def rows(self) -> slice:
        """Block rows of the sub-block."""
        return slice(self.row_offset, self.row_offset + 2 * self.l_i + 1)

    @property
    def cols(self) -> slice:
        """Block columns of the sub-block."""
        return slice(self.col_offset, self.col_offset + 2 * self.l_j + 1)

    @property
    def degrees(self) -> range:
        """Irrep degrees L = |l_i-l_j|..l_i+l_j of the sub-block."""
        return _degrees(self.l_i, self.l_j)

    @property
    def degree_slice(self) -> slice:
        """Entries L_min^2 .. (L_max+1)^2 - 1 of the degree/order axis (contiguous)."""
        return slice(self.degrees[0] ** 2, (self.degrees[-1] + 1) ** 2)


def _offsets(ls: tuple[int, ...]) -> list[int]:
    """First orbital of each radial function."""
    return list(accumulate((2 * l + 1 for l in ls[:-1]), initial=0))


def _pack(ls_i: tuple[int, ...], ls_j: tuple[int, ...]) -> tuple[SubBlockSlot, ...]:
    """GEARS H greedy packing: each sub-block takes the first feature with free channels."""
    taken: set[tuple[int, int, int]] = set()  # (parity, L, feature)
    slots = []
    cols = _offsets(ls_j)
    for a, (l_i, row) in enumerate(zip(ls_i, _offsets(ls_i))):
        for b, (l_j, col) in enumerate(zip(ls_j, cols)):
            parity = (l_i + l_j) % 2
            degrees = _degrees(l_i, l_j)
            feature = next(
                f for f in count() if all((parity, L, f) not in taken for L in degrees)
            )
            taken.update((parity, L, feature) for L in degrees)
            slots.append(SubBlockSlot(a, b, l_i, l_j, row, col, parity, feature))
    return tuple(slots)


@dataclass(frozen=True)
class IrrepsLayout:
    """Placement of the sub-blocks of one species pair in an e3x feature array.

    Build with `IrrepsLayout.for_pair` (or `for_onsite`); the fields are derived.

    Attributes:
        ls_i: angular momenta of the radial functions of the row species.
        ls_j: angular momenta of the radial functions of the column species.
        max_degree: largest irrep degree of the feature array (>= max l_i + l_j).
        n_features: number of features F (>= what the packing needs).
        cartesian_order: irreps components in e3x's Cartesian order instead of M = -L..L.
        slots: one SubBlockSlot per (radial_i, radial_j), row-major.
    """

    ls_i: tuple[int, ...]
    ls_j: tuple[int, ...]
    max_degree: int
    n_features: int
    cartesian_order: bool
    slots: tuple[SubBlockSlot, ...]

    @classmethod
    def for_pair(
        cls,
        ls_i: Sequence[int],
        ls_j: Sequence[int],
        *,
        max_degree: int | None = None,
        n_features: int | None = None,
        cartesian_order: bool = False,
    ) -> IrrepsLayout:
        """Greedy GEARS H layout for blocks between a species with `ls_i` and one with `ls_j`.

        Args:
            ls_i: angular momenta (0..3) of the row species' radial functions.
            ls_j: angular momenta (0..3) of the column species' radial functions.
            max_degree: pad the degree axis to this maximum degree (e.g. to share one
                network output shape across species pairs); None: the smallest needed.
            n_features: pad the feature axis to this size; None: the smallest needed.
            cartesian_order: store irreps components in e3x's Cartesian order; must
                match the `cartesian_order` of the e3x modules producing the features.

        Returns:
            The layout.

        Raises:
            MLHError: an l outside 0..3, no radial functions, or a max_degree /
                n_features smaller than the packing needs.
        """
        ls_i, ls_j = _check_ls(ls_i), _check_ls(ls_j)
        slots = _pack(ls_i, ls_j)
        needed_degree = max(l_i + l_j for l_i in ls_i for l_j in ls_j)
        needed_features = 1 + max(slot.feature for slot in slots)
        max_degree = needed_degree if max_degree is None else max_degree
        n_features = needed_features if n_features is None else n_features
        if max_degree < needed_degree or n_features < needed_features:
            raise MLHError(
                f"ls {ls_i} x {ls_j} need max_degree >= {needed_degree} and n_features >= "
                f"{needed_features}, got {max_degree} and {n_features}"
            )
        return cls(ls_i, ls_j, max_degree, n_features, cartesian_order, slots)

    @classmethod
    def for_onsite(cls, ls: Sequence[int], **kwargs) -> IrrepsLayout:
        """Layout of on-site blocks H_ii (same species on both sides); kwargs as `for_pair`."""
        return cls.for_pair(ls, ls, **kwargs)

    @property
    def block_shape(self) -> tuple[int, int]:
        """(orbitals of the row species, orbitals of the column species)."""
        return (sum(2 * l + 1 for l in self.ls_i), sum(2 * l + 1 for l in self.ls_j))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the irreps array, (2, (max_degree+1)^2, n_features)."""
        return (2, (self.max_degree + 1) ** 2, self.n_features)

    @cached_property
    def mask(self) -> np.ndarray:
        """Read-only bool array of `shape`, True where a block value is stored."""
        mask = np.zeros(self.shape, dtype=bool)
        for slot in self.slots:
            mask[slot.parity, slot.degree_slice, slot.feature] = True
        mask.flags.writeable = False
        return mask


def blocks_to_irreps(blocks: np.ndarray, layout: IrrepsLayout) -> np.ndarray:
    """Irreps arrays of many blocks of one species pair (vectorised over the blocks).

    Args:
        blocks: real array (N, n_i, n_j) of blocks (any unit, kept).
        layout: the species pair's layout.

    Returns:
        float64 array (N, 2, (max_degree+1)^2, n_features); entries outside
        `layout.mask` are exactly zero. The transform is orthogonal, so each irreps
        array has the Frobenius norm of its block.

    Raises:
        MLHError: wrong shape or complex input.
    """
    blocks = _as_real(blocks, "blocks")
    n = _check_batched_shape(blocks, layout.block_shape, "blocks")
    irreps = np.zeros((n, *layout.shape))
    for slot in layout.slots:
        q = coupling_matrix(slot.l_i, slot.l_j, layout.cartesian_order)
        sub = blocks[:, slot.rows, slot.cols].reshape(n, -1)
        irreps[:, slot.parity, slot.degree_slice, slot.feature] = np.einsum("kq,nq->nk", q, sub)
    return irreps


def irreps_to_blocks(irreps: np.ndarray, layout: IrrepsLayout) -> np.ndarray:
    """Blocks of many irreps arrays of one species pair; inverse of `blocks_to_irreps`.

    Entries outside `layout.mask` are ignored.

    Args:
        irreps: real array (N, 2, (max_degree+1)^2, n_features).
        layout: the species pair's layout.

    Returns:
        float64 array (N, n_i, n_j) of blocks.

    Raises:
        MLHError: wrong shape or complex input.
    """
    irreps = _as_real(irreps, "irreps")
    n = _check_batched_shape(irreps, layout.shape, "irreps")
    blocks = np.zeros((n, *layout.block_shape))
    for slot in layout.slots:
        q = coupling_matrix(slot.l_i, slot.l_j, layout.cartesian_order)
        coupled = irreps[:, slot.parity, slot.degree_slice, slot.feature]
        sub = np.einsum("kq,nk->nq", q, coupled)
        blocks[:, slot.rows, slot.cols] = sub.reshape(n, 2 * slot.l_i + 1, 2 * slot.l_j + 1)
    return blocks


def block_to_irreps(block: np.ndarray, layout: IrrepsLayout) -> np.ndarray:
    """Irreps array (2, (max_degree+1)^2, n_features) of one block (n_i, n_j).

    See `blocks_to_irreps`.
    """
    block = _as_real(block, "block")
    _check_shape(block, layout.block_shape, "block")
    return blocks_to_irreps(block[np.newaxis], layout)[0]


def irreps_to_block(irreps: np.ndarray, layout: IrrepsLayout) -> np.ndarray:
    """Block (n_i, n_j) of one irreps array (2, (max_degree+1)^2, n_features).

    See `irreps_to_blocks`.
    """
    irreps = _as_real(irreps, "irreps")
    _check_shape(irreps, layout.shape, "irreps")
    return irreps_to_blocks(irreps[np.newaxis], layout)[0]


def _check_rotation(rotation: np.ndarray) -> np.ndarray:
    """`rotation` as float64 after checking it is a proper 3x3 rotation matrix."""
    rotation = _as_real(rotation, "rotation")
    _check_shape(rotation, (3, 3), "rotation")
    orthogonality = np.abs(rotation @ rotation.T - np.eye(3)).max()
    if orthogonality > _ROTATION_TOLERANCE or np.linalg.det(rotation) < 0:
        raise MLHError(
            f"rotation must be a proper rotation (orthogonal, det +1), got "
            f"max |RR^T - 1| = {orthogonality:.1e}, det = {np.linalg.det(rotation):.3f}"
        )
    return rotation


def wigner_d_orbitals(rotation: np.ndarray, ls: Sequence[int]) -> np.ndarray:
    """Block-diagonal real Wigner-D matrix acting on the orbitals of one species.

    With positions r -> R r (an (n, 3) array `pos` -> `pos @ R.T`), the orbital
    Y_lm(r - r_i) of each atom becomes sum_m' D_mm' Y_lm'; Hamiltonian and overlap
    blocks transform as H'_ij = D_i H_ij D_j^T with D_i = wigner_d_orbitals(R, ls_i).
    The l block of D is e3x.so3.wigner_d(R)[l^2:(l+1)^2, l^2:(l+1)^2] (m = -l..l),
    which satisfies Y(R r) = D Y(r) for e3x's (and GPAW's) real spherical harmonics.

    Args:
        rotation: proper rotation matrix R, shape (3, 3).
        ls: angular momenta (0..3) of the species' radial functions.

    Returns:
        Orthogonal float64 matrix (n_orbitals, n_orbitals).

    Raises:
        MLHError: rotation not a proper rotation, or an l outside 0..3.
    """
    rotation = _check_rotation(rotation)
    ls = _check_ls(ls)
    with jax.enable_x64(True):
        d = np.asarray(_wigner_d(rotation, MAX_ANGULAR_MOMENTUM, False))
    return scipy.linalg.block_diag(*[d[l * l : (l + 1) ** 2, l * l : (l + 1) ** 2] for l in ls])
