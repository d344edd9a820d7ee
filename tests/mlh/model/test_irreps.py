"""Tests of mlh.model.irreps: CG coupling, GEARS H packing, round trips, rotations, GPAW harmonics."""

from __future__ import annotations

import e3x
import jax
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from mlh.errors import MLHError
from mlh.model.irreps import (
    EVEN,
    ODD,
    IrrepsLayout,
    block_to_irreps,
    blocks_to_irreps,
    coupling_matrix,
    irreps_to_block,
    irreps_to_blocks,
    wigner_d_orbitals,
)

ls_strategy = st.lists(st.integers(0, 3), min_size=1, max_size=4).map(tuple)
seeds = st.integers(0, 2**32 - 1)
fast = settings(max_examples=40, deadline=None)


def random_blocks(layout: IrrepsLayout, n: int, seed: int) -> np.ndarray:
    """(n, n_i, n_j) standard-normal blocks."""
    return np.random.default_rng(seed).normal(size=(n, *layout.block_shape))


_jitted_wigner_d = jax.jit(e3x.so3.wigner_d, static_argnums=(1, 2))


def e3x_wigner_d(rotation: np.ndarray, max_degree: int, cartesian_order: bool) -> np.ndarray:
    """e3x's Wigner-D matrix of all degrees up to max_degree, in float64.

    Computed at degree 6 and cut (Wigner-D is block diagonal) so that jit compiles once.
    """
    with jax.enable_x64(True):
        wigner = np.asarray(_jitted_wigner_d(rotation, 6, cartesian_order))
    size = (max_degree + 1) ** 2
    return wigner[:size, :size]


def e3x_harmonics(vectors: np.ndarray, max_degree: int, normalization: str) -> np.ndarray:
    """e3x's real spherical harmonics in the order m = -l..l, in float64."""
    with jax.enable_x64(True):
        return np.asarray(
            e3x.so3.spherical_harmonics(
                vectors, max_degree, cartesian_order=False, normalization=normalization
            )
        )


@pytest.mark.parametrize("l_i", range(4))
@pytest.mark.parametrize("l_j", range(4))
def test_coupling_matrix_is_orthogonal(l_i, l_j):
    size = (2 * l_i + 1) * (2 * l_j + 1)
    q = coupling_matrix(l_i, l_j)
    np.testing.assert_allclose(q @ q.T, np.eye(size), rtol=0, atol=1e-13)
    # Cartesian order only permutes the components within each irrep (its correctness
    # is checked by the equivariance test against e3x's Cartesian Wigner-D).
    q_cartesian = coupling_matrix(l_i, l_j, cartesian_order=True)
    np.testing.assert_array_equal(np.sort(q_cartesian, axis=0), np.sort(q, axis=0))


def test_coupling_matrix_rows_are_e3x_clebsch_gordan_coefficients():
    l_i, l_j = 3, 2
    with jax.enable_x64(True):
        cg = [
            np.asarray(e3x.so3.clebsch_gordan_for_degrees(l_i, l_j, L, cartesian_order=False))
            for L in range(1, 6)
        ]
    np.testing.assert_array_equal(
        coupling_matrix(l_i, l_j), np.concatenate([c.reshape(35, -1).T for c in cg])
    )


def test_coupling_matrix_is_cached_and_read_only():
    assert coupling_matrix(2, 3) is coupling_matrix(2, 3)
    with pytest.raises(ValueError, match="read-only"):
        coupling_matrix(2, 3)[0, 0] = 1.0


def test_packing_of_the_spd_example_of_gears_h_s4():
    layout = IrrepsLayout.for_pair((0, 1, 2), (0, 1, 2))
    # ss sp sd | ps pp pd | ds dp dd, greedy over (parity, L) channels.
    assert [s.feature for s in layout.slots] == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert [s.parity for s in layout.slots] == [EVEN, ODD, EVEN, ODD, EVEN, ODD, EVEN, ODD, EVEN]
    assert layout.max_degree == 4
    assert layout.shape == (2, 25, 4)
    assert layout.block_shape == (9, 9)


@fast
@given(ls_i=ls_strategy, ls_j=ls_strategy)
def test_packing_is_greedy_and_collision_free(ls_i, ls_j):
    layout = IrrepsLayout.for_pair(ls_i, ls_j)
    channels = [{(s.parity, L, s.feature) for L in s.degrees} for s in layout.slots]
    assert sum(map(len, channels)) == len(set().union(*channels))
    for k, slot in enumerate(layout.slots):
        earlier = set().union(*channels[:k])
        for f in range(slot.feature):
            assert any((slot.parity, L, f) in earlier for L in slot.degrees)
    assert [(s.radial_i, s.radial_j) for s in layout.slots] == [
        (a, b) for a in range(len(ls_i)) for b in range(len(ls_j))
    ]
    assert layout.mask.sum() == np.prod(layout.block_shape)


@fast
@given(ls_i=ls_strategy, ls_j=ls_strategy, seed=seeds, cartesian_order=st.booleans())
def test_round_trip_is_exact_norm_preserving_and_masked(ls_i, ls_j, seed, cartesian_order):
    layout = IrrepsLayout.for_pair(ls_i, ls_j, cartesian_order=cartesian_order)
    blocks = random_blocks(layout, 3, seed)
    irreps = blocks_to_irreps(blocks, layout)
    assert irreps.shape == (3, *layout.shape)
    assert np.all(irreps[:, ~layout.mask] == 0.0)
    np.testing.assert_allclose(irreps_to_blocks(irreps, layout), blocks, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        np.linalg.norm(irreps.reshape(3, -1), axis=1),
        np.linalg.norm(blocks.reshape(3, -1), axis=1),
        rtol=1e-12,
    )
    singles = np.stack([block_to_irreps(b, layout) for b in blocks])
    np.testing.assert_allclose(singles, irreps, rtol=0, atol=1e-14)
    backs = np.stack([irreps_to_block(x, layout) for x in irreps])
    np.testing.assert_allclose(backs, irreps_to_blocks(irreps, layout), rtol=0, atol=1e-14)


def test_onsite_layout_and_padding():
    layout = IrrepsLayout.for_onsite((0, 2, 1), max_degree=6, n_features=9)
    assert layout.ls_i == layout.ls_j == (0, 2, 1)
    assert layout.shape == (2, 49, 9)
    block = random_blocks(layout, 1, 0)[0]
    block = block + block.T
    np.testing.assert_allclose(
        irreps_to_block(block_to_irreps(block, layout), layout), block, atol=1e-12
    )


def test_unused_irreps_entries_are_ignored():
    layout = IrrepsLayout.for_pair((0, 2, 1), (0, 1, 2))
    irreps = np.random.default_rng(1).normal(size=layout.shape)
    np.testing.assert_array_equal(
        irreps_to_block(irreps, layout), irreps_to_block(np.where(layout.mask, irreps, 0), layout)
    )


def test_positions_rotation_convention_matches_wigner_d_orbitals():
    """A geometric 'block' Y_li(d) Y_lj(d)^T obeys H'_ij = D_i H_ij D_j^T when d -> R d."""
    ls_i, ls_j = (0, 2, 1, 3), (1, 0, 2)
    rotation = Rotation.random(random_state=7).as_matrix()
    d = np.array([[0.3, -1.2, 0.8]])

    def geometric_block(vector: np.ndarray) -> np.ndarray:
        y = e3x_harmonics(vector, 3, "racah")[0]
        left = np.concatenate([y[l * l : (l + 1) ** 2] for l in ls_i])
        right = np.concatenate([y[l * l : (l + 1) ** 2] for l in ls_j])
        return np.outer(left, right)

    d_i, d_j = wigner_d_orbitals(rotation, ls_i), wigner_d_orbitals(rotation, ls_j)
    np.testing.assert_allclose(
        geometric_block(d @ rotation.T), d_i @ geometric_block(d) @ d_j.T, atol=1e-12
    )
    np.testing.assert_allclose(d_i @ d_i.T, np.eye(len(d_i)), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(ls_i=ls_strategy, ls_j=ls_strategy, seed=seeds, cartesian_order=st.booleans())
def test_rotated_blocks_give_rotated_irreps(ls_i, ls_j, seed, cartesian_order):
    layout = IrrepsLayout.for_pair(ls_i, ls_j, cartesian_order=cartesian_order)
    rotation = Rotation.random(random_state=seed).as_matrix()
    block = random_blocks(layout, 1, seed)[0]
    rotated = wigner_d_orbitals(rotation, ls_i) @ block @ wigner_d_orbitals(rotation, ls_j).T
    wigner = e3x_wigner_d(rotation, layout.max_degree, cartesian_order)
    np.testing.assert_allclose(
        block_to_irreps(rotated, layout),
        np.einsum("dk,pkf->pdf", wigner, block_to_irreps(block, layout)),
        atol=1e-12,
    )


def test_gpaw_and_e3x_spherical_harmonics_agree_in_order_and_sign():
    from gpaw.sphere.spherical_harmonics import Y, Yl

    vectors = np.random.default_rng(3).normal(size=(200, 3))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    e3x_y = e3x_harmonics(vectors, 3, "orthonormal")
    gpaw_y = np.array([[Y(L, *v) for L in range(16)] for v in vectors])
    np.testing.assert_allclose(gpaw_y, e3x_y, rtol=0, atol=1e-13)
    for l in range(4):  # the C routine used for LCAO basis functions
        out = np.empty(2 * l + 1)
        c_y = []
        for v in vectors:
            Yl(l, v.copy(), out)
            c_y.append(out.copy())
        np.testing.assert_allclose(np.array(c_y), e3x_y[:, l * l : (l + 1) ** 2], atol=1e-13)


@pytest.mark.gpaw
def test_gpaw_overlap_transforms_with_wigner_d_orbitals():
    """GPAW LCAO overlap of a rotated molecule equals D S D^T (no SCF, ~2 s)."""
    from ase import Atoms
    from gpaw.new.calculation import DFT

    rotation = Rotation.random(random_state=3).as_matrix()
    positions = np.array([[0.0, 0.0, 0.0], [1.5, 0.9, 0.6], [-0.7, 1.1, -1.2]])

    def overlap(pos: np.ndarray) -> tuple[np.ndarray, list[tuple[int, ...]]]:
        atoms = Atoms("SeO2", positions=pos + 5.0, cell=[10.0] * 3, pbc=False)
        dft = DFT(atoms, mode="lcao", basis="dzp", h=0.3, txt=None, converge=False)
        ls = [tuple(int(bf.l) for bf in setup.basis.bf_j) for setup in dft.setups]
        return np.asarray(next(iter(dft.ibzwfs)).S_MM.data).real, ls

    s0, ls = overlap(positions)
    s1, _ = overlap(positions @ rotation.T)
    d = scipy.linalg.block_diag(*[wigner_d_orbitals(rotation, ls_a) for ls_a in ls])
    assert np.abs(s1 - s0).max() > 0.1  # the rotation matters
    np.testing.assert_allclose(s1, d @ s0 @ d.T, atol=1e-10)


def test_jax_and_e3x_configuration_untouched():
    x64, cartesian = jax.config.jax_enable_x64, e3x.Config.cartesian_order
    coupling_matrix(1, 2)
    wigner_d_orbitals(np.eye(3), (2,))
    assert (jax.config.jax_enable_x64, e3x.Config.cartesian_order) == (x64, cartesian)


@pytest.mark.parametrize(
    "call",
    [
        lambda: IrrepsLayout.for_pair((0, 4), (1,)),
        lambda: IrrepsLayout.for_onsite((4,)),
        lambda: coupling_matrix(4, 0),
        lambda: wigner_d_orbitals(np.eye(3), (1, 4)),
    ],
)
def test_l4_is_rejected(call):
    with pytest.raises(MLHError, match=r"angular momenta \[4\] are not supported.*l = 0\.\.3"):
        call()


def test_bad_inputs_are_rejected():
    layout = IrrepsLayout.for_pair((0, 1), (2,))
    with pytest.raises(MLHError, match=r"block must have shape \(4, 5\), got \(5, 4\)"):
        block_to_irreps(np.zeros((5, 4)), layout)
    with pytest.raises(MLHError, match=r"blocks must have shape \(N, 4, 5\)"):
        blocks_to_irreps(np.zeros((4, 5)), layout)
    with pytest.raises(MLHError, match=r"irreps must have shape \(N, 2, 16, 1\)"):
        irreps_to_blocks(np.zeros((2, 16, 2)), layout)
    with pytest.raises(MLHError, match="must be real"):
        block_to_irreps(np.zeros((4, 5), complex), layout)
    with pytest.raises(MLHError, match="need max_degree >= 3 and n_features >= 1"):
        IrrepsLayout.for_pair((0, 1), (2,), max_degree=2)
    with pytest.raises(MLHError, match="at least one radial function"):
        IrrepsLayout.for_pair((), (2,))
    with pytest.raises(MLHError, match="proper rotation"):
        wigner_d_orbitals(-np.eye(3), (1,))
