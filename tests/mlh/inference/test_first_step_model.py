"""The bundled first-step correction models on cells that none of their training records
holds: GPAW's SCF H is much closer to their prediction than to the first-step baseline B
that they correct, and a record with another baseline (H0 itself) is refused.

- examples/models/sio2_first_step on the 9-atom primitive quartz cell (k grid 2x2x2),
  measured: on-site MAE 26.4 meV for B, 2.6 meV for the model;
- examples/models/wse2_vacancies_first_step on a 6-atom orthogonal WSe2 cell of the training
  recipe (W2Se4, k grid 4x3x1 of the training density), measured: 13.5 meV for B, 3.6 meV
  for the model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from ase import Atoms

from mlh.errors import MLHError
from mlh.gpaw.reference import reference_record
from mlh.gpaw.settings import GPAWSettings
from mlh.gpaw.structures import wse2_with_vacancies
from mlh.inference.prediction import predict_record
from mlh.model.predictor import Predictor
from tests.structures import EXAMPLES, quartz


def small_wse2() -> Atoms:
    """A 1x1 orthogonal cell of the WSe2 training recipe: W2Se4, strained and rattled (a
    vacancy in so small a cell is a vacancy density none of the training cells has)."""
    return wse2_with_vacancies(np.random.default_rng(2), repeat=(1, 1))


CASES = {
    "sio2": ("sio2_first_step", quartz, {"h": 0.2, "first_step_share": 0.45, "kpoint_density": 1.0},
             {}),
    "wse2": ("wse2_vacancies_first_step", small_wse2,
             {"h": 0.2, "first_step_share": 0.15, "kpoint_density": 2.0}, {"setups": {"W": "6"}}),
}
"""Case: (bundled model, structure, the model's baseline metadata, other GPAW settings)."""


@pytest.mark.gpaw
@pytest.mark.parametrize("case", sorted(CASES))
def test_bundled_first_step_model_corrects_its_baseline(case: str):
    model, structure, baseline, settings = CASES[case]
    predictor = Predictor.load(EXAMPLES / "models" / model)
    assert predictor.metadata["baseline"] == baseline
    record = reference_record(structure(), GPAWSettings(
        kpoint_density=baseline["kpoint_density"], baseline=True,
        first_step_share=baseline["first_step_share"], forces=False, **settings))
    predicted = predict_record(predictor, record, case)

    def onsite_mae(values: np.ndarray) -> float:
        return 1e3 * float(np.abs(values - record.H_onsite).mean())

    before, learned = onsite_mae(record.H0_onsite), onsite_mae(predicted.H_onsite)
    assert learned < 0.35 * before, f"on-site MAE {learned:.1f} meV, B alone {before:.1f} meV"
    plain = replace(record, provenance={key: value for key, value in record.provenance.items()
                                        if not key.startswith("baseline_first_step")})
    with pytest.raises(MLHError, match=f"{case}: its H0 was made with .*'first_step_share': 0.0"):
        predict_record(predictor, plain, case)
