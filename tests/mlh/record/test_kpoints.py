"""k-point grids (mlh.record.kpoints)."""

import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.record.kpoints import monkhorst_pack


def test_monkhorst_pack_kpoints_reduced_by_time_reversal():
    kpoints, weights = monkhorst_pack((2, 2, 1), time_reversal=True)
    assert len(kpoints) == 2 and weights == pytest.approx([0.5, 0.5])
    kpoints, weights = monkhorst_pack((3, 3, 1), time_reversal=True)
    assert len(kpoints) == 5 and weights.sum() == pytest.approx(1.0)
    assert weights[np.flatnonzero(np.all(kpoints == 0, axis=1))[0]] == pytest.approx(1 / 9)
    with pytest.raises(MLHError, match="three positive integers"):
        monkhorst_pack((2, 0, 1), time_reversal=True)
