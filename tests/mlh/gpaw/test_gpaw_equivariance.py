"""Rotating a structure transforms GPAW's H and S blocks by Wigner-D matrices.

For positions r -> R r: H'_ij(R) = D_i H_ij(R) D_j^T with D from mlh.model.irreps. For the
periodic cell the cell rotates too, so GPAW's grid rotates rigidly with the atoms and
the check is tight (SCF convergence noise, ~1e-4 eV); the molecule rotates inside a fixed box, so grid (egg-box) errors
of a few meV remain in H.
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mlh.model.irreps import wigner_d_orbitals

pytestmark = pytest.mark.gpaw

ROTATION = Rotation.from_euler("zyx", [37.0, -21.0, 64.0], degrees=True).as_matrix()


def rotated_pair_blocks(record, values, pair, rotation):
    i, j = record.pair_i[pair], record.pair_j[pair]
    d_i = wigner_d_orbitals(rotation, record.basis.for_number(record.numbers[i]).ls)
    d_j = wigner_d_orbitals(rotation, record.basis.for_number(record.numbers[j]).ls)
    return d_i @ record.pair_block(values, pair) @ d_j.T


@pytest.mark.parametrize("name, h_tolerance", [("water", 0.02), ("silicon", 2e-4)])
def test_blocks_rotate_with_wigner_d(gpaw_records, name, h_tolerance):
    _, record = gpaw_records(name)
    _, rotated = gpaw_records(name, ROTATION)
    np.testing.assert_array_equal(rotated.pair_i, record.pair_i)
    np.testing.assert_array_equal(rotated.pair_shift, record.pair_shift)
    h_errors, s_errors = [], []
    for p in range(record.n_pairs):
        expected_h = rotated_pair_blocks(record, record.H_pair[0], p, ROTATION)
        expected_s = rotated_pair_blocks(record, record.S_pair, p, ROTATION)
        h_errors.append(np.abs(rotated.pair_block(rotated.H_pair[0], p) - expected_h).max())
        s_errors.append(np.abs(rotated.pair_block(rotated.S_pair, p) - expected_s).max())
    for a in range(record.n_atoms):
        d = wigner_d_orbitals(ROTATION, record.basis.for_number(record.numbers[a]).ls)
        h_errors.append(np.abs(rotated.onsite_block(rotated.H_onsite[0], a)
                               - d @ record.onsite_block(record.H_onsite[0], a) @ d.T).max())
    assert max(s_errors) < 1e-6, f"S: {max(s_errors):.2e}"
    assert max(h_errors) < h_tolerance, f"H: {max(h_errors):.2e} eV"
    # not vacuous: the rotation changes the blocks
    assert np.abs(rotated.S_pair - record.S_pair).max() > 1e-2
