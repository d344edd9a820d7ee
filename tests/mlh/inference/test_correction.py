"""A correction model (target "correction") predicts dH and returns H = H0 + dH.

The same random parameters as a direct model give dH, so H - H0 must equal the direct
model's H exactly, for a record that carries H0 and for a structure whose H0 GPAW builds
with the model's settings. Bad input: a record without H0, H0 of other settings, a
structure too large for GPAW's dense H0.
"""

from __future__ import annotations

from dataclasses import replace

import jax
import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.gpaw.reference import reference_record
from mlh.gpaw.settings import settings_from_provenance
from mlh.inference import prediction
from mlh.inference.prediction import predict_record
from mlh.model.layouts import OutputLayouts
from mlh.model.predictor import Predictor
from mlh.model.targets import learned_record
from tests.models import neutral_scale_shift, random_params, tiny_config
from tests.structures import STRUCTURES


@pytest.fixture(scope="module")
def water_with_baseline():
    build, settings = STRUCTURES["water"]
    atoms = build()
    return atoms, reference_record(atoms, settings.model_copy(update={"baseline": True}))


@pytest.fixture(scope="module")
def predictors(water_with_baseline):
    """(direct, correction) predictors with the same random parameters."""
    _, record = water_with_baseline
    layouts = OutputLayouts.from_basis(record.basis)
    config = tiny_config()
    shell = Predictor(config, layouts, neutral_scale_shift(layouts, config.bond_centered.cutoff), None, {})
    template = jax.eval_shape(shell.model.init, jax.random.PRNGKey(0), *shell._init_inputs())
    metadata = {"gpaw": settings_from_provenance(record.provenance), "baseline": {"h": 0.2}}
    direct = shell.with_params(random_params(template, seed=3), metadata)
    correction = Predictor(config.model_copy(update={"target": "correction"}), layouts, direct.stats,
                           direct.params, metadata)
    return direct, correction


def dense(record, baseline: bool = False) -> np.ndarray:
    return (record.baseline_k(None) if baseline else record.hamiltonian_k(None)).toarray()


def test_learned_record_is_the_correction(water_with_baseline):
    _, record = water_with_baseline
    learned = learned_record(record, "correction", "water")
    np.testing.assert_array_equal(learned.H_pair, record.H_pair - record.H0_pair)
    assert learned_record(record, "hamiltonian", "water") is record
    with pytest.raises(MLHError, match="water: the model learns corrections .* no H0"):
        learned_record(replace(record, H0_pair=None, H0_onsite=None), "correction", "water")


def test_record_prediction_is_h0_plus_the_direct_models_output(water_with_baseline, predictors):
    _, record = water_with_baseline
    direct, correction = predictors
    plain = predict_record(direct, record, "water")
    corrected = predict_record(correction, record, "water")
    assert corrected.provenance["model_target"] == "correction" and corrected.has_baseline
    np.testing.assert_allclose(dense(corrected, baseline=True), dense(record, baseline=True), atol=1e-12)
    np.testing.assert_allclose(dense(corrected) - dense(corrected, baseline=True), dense(plain),
                               atol=1e-10)
    assert np.abs(dense(plain)).max() > 1e-3  # the random model predicts something


def test_structure_prediction_builds_h0_with_the_models_settings(water_with_baseline, predictors):
    atoms, record = water_with_baseline
    direct, correction = predictors
    corrected = predict_record(correction, atoms, "water")
    np.testing.assert_allclose(dense(corrected, baseline=True), dense(record, baseline=True), atol=1e-8)
    np.testing.assert_allclose(dense(corrected) - dense(corrected, baseline=True),
                               dense(predict_record(direct, atoms, "water")), atol=1e-10)
    assert corrected.labels.n_electrons == 8


def test_correction_model_refuses_what_has_no_matching_h0(water_with_baseline, predictors, monkeypatch):
    atoms, record = water_with_baseline
    _, correction = predictors
    with pytest.raises(MLHError, match="water.nc: .* the record has no H0"):
        predict_record(correction, replace(record, H0_pair=None, H0_onsite=None), "water.nc")
    other = replace(record, provenance={**record.provenance, "grid_spacing_angstrom": 0.15})
    with pytest.raises(MLHError, match="water.nc: its H0 was made with .*'h': 0.15"):
        predict_record(correction, other, "water.nc")
    monkeypatch.setattr(prediction, "BASELINE_ORBITAL_LIMIT", 10)
    with pytest.raises(MLHError, match="water: 17 orbitals are too many for the zeroth-step H0"):
        predict_record(correction, atoms, "water")


def test_energy_routes_refuse_a_correction_model(predictors):
    from physics.band.model_hamiltonian import ModelHamiltonian

    _, correction = predictors
    with pytest.raises(MLHError, match="target 'hamiltonian'"):
        ModelHamiltonian(correction)
