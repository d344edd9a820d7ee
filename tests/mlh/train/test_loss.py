"""The gauge-invariant training loss: blind to H -> H + c S per structure, and only to that."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.inference.metrics import gauge_aligned
from mlh.model.config import LossConfig, ModelConfig, load_config
from mlh.model.predictor import Predictor
from mlh.record.io import write_record
from mlh.train.data import collate, make_sample
from mlh.train.loss import irreps_loss
from mlh.train.statistics import dataset_layouts, fit_from_samples
from tests.models import TINY_MODEL

pytestmark = pytest.mark.gpaw

CUTOFF = TINY_MODEL["bond_centered"]["cutoff"]


@pytest.fixture(scope="module")
def wse2(gpaw_records, tmp_path_factory):
    """(record, layouts, tables) of the rattled WSe2 primitive cell (GPAW, 3x3x1 k)."""
    _, record = gpaw_records("wse2")
    layouts = dataset_layouts([write_record(record, tmp_path_factory.mktemp("loss") / "wse2.nc")])
    sample = make_sample(record, layouts, CUTOFF, CUTOFF, overlap=True)
    stats = fit_from_samples([sample], layouts, CUTOFF)
    tables = Predictor.initialise(ModelConfig.model_validate(TINY_MODEL), layouts, stats).tables()
    return record, layouts, tables


def _loss(records, prediction, wse2, gauge_invariant: bool) -> float:
    """Loss of prediction(batch) -> (on-site, off-site irreps) for one batch of `records`."""
    _, layouts, tables = wse2
    batch = collate([make_sample(r, layouts, CUTOFF, CUTOFF, overlap=True) for r in records], 8, 256)
    onsite, offsite = prediction(batch)
    loss, _ = irreps_loss(onsite, offsite, batch, tables, LossConfig(gauge_invariant=gauge_invariant))
    return float(loss)


def test_loss_ignores_c_times_s_per_structure(wse2):
    record, layouts, _ = wse2
    plain = [record, record]
    # a fixed prediction: the target plus noise (0.1 eV on-site, 0.01 eV off-site)
    batch = collate([make_sample(r, layouts, CUTOFF, CUTOFF) for r in plain], 8, 256)
    rng = np.random.default_rng(0)
    noisy = (batch.onsite_target + 0.1 * rng.normal(size=batch.onsite_target.shape),
             batch.offsite_target + 0.01 * rng.normal(size=batch.offsite_target.shape))

    def loss(records, gauge_invariant):
        return _loss(records, lambda _: noisy, wse2, gauge_invariant)

    # two structures in one batch, each with its own c (eV): one shift per batch cannot absorb it
    shifted = [gauge_aligned(record, -0.4), gauge_aligned(record, 0.25)]
    assert loss(shifted, True) == pytest.approx(loss(plain, True), rel=1e-5)
    assert loss(shifted, False) > 1.3 * loss(plain, False)
    # only c S: a constant added to every on-site element (not S-shaped) still counts
    other = replace(record, H_onsite=record.H_onsite + 0.5)
    assert loss([other, record], True) > 2 * loss(plain, True)


def test_prediction_off_by_c_s_alone_has_zero_loss(wse2):
    record = wse2[0]

    def off_by_c_s(batch, c=0.3):
        return (batch.onsite_target - c * batch.onsite_overlap,
                batch.offsite_target - c * batch.offsite_overlap)

    assert _loss([record], off_by_c_s, wse2, True) == pytest.approx(0.0, abs=1e-6)
    assert _loss([record], off_by_c_s, wse2, False) > 0.1


def test_gauge_loss_refuses_partitions(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("loss: {gauge_invariant: true}\ndata: {partition: {axis: 0, count: 2}}\n")
    with pytest.raises(MLHError, match="gauge_invariant needs the overlap of whole records"):
        load_config(path)
