"""The bundled SiO2 first-step correction model (examples/models/sio2_first_step) on a quartz
cell that none of its training records holds (the 9-atom primitive cell, k grid 2x2x2):
GPAW's SCF H is much closer to its prediction than to the first-step baseline B that it
corrects (measured: on-site MAE 26.4 meV for B, 2.6 meV for the model), and a record with
another baseline (H0 itself) is refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.gpaw.reference import reference_record
from mlh.gpaw.settings import GPAWSettings
from mlh.inference.prediction import predict_record
from mlh.model.predictor import Predictor
from tests.structures import EXAMPLES, quartz

MODEL = EXAMPLES / "models" / "sio2_first_step"


@pytest.mark.gpaw
def test_bundled_first_step_model_corrects_its_baseline():
    predictor = Predictor.load(MODEL)
    assert predictor.metadata["baseline"] == {"h": 0.2, "first_step_share": 0.45, "kpoint_density": 1.0}
    settings = GPAWSettings(kpoint_density=1.0, baseline=True, first_step_share=0.45, forces=False)
    record = reference_record(quartz(), settings)
    predicted = predict_record(predictor, record, "quartz")

    def onsite_mae(values: np.ndarray) -> float:
        return 1e3 * float(np.abs(values - record.H_onsite).mean())

    baseline, learned = onsite_mae(record.H0_onsite), onsite_mae(predicted.H_onsite)
    assert learned < 0.35 * baseline, f"on-site MAE {learned:.1f} meV, B alone {baseline:.1f} meV"
    plain = replace(record, provenance={key: value for key, value in record.provenance.items()
                                        if not key.startswith("baseline_first_step")})
    with pytest.raises(MLHError, match="quartz: its H0 was made with .*'first_step_share': 0.0"):
        predict_record(predictor, plain, "quartz")
