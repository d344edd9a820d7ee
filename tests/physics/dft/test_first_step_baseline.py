"""The first-step baseline B = H0 + s (H[n0] - H0) that `mlh generate --first-step-share`
stores (mlh.gpaw.reference), against an independent path: the dft route's own H[n_out] at
the state of H0 (physics.dft.functional), mixed by hand, for a molecule and a periodic cell
with k-points. And what refuses it: settings with a fixed k grid, records of mixed
baselines, a record whose baseline is not the model's, the scf route (the dft route's
forces with it: tests/physics/dft/test_forces.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.gpaw.record_settings import record_atoms, settings_from_record
from mlh.gpaw.reference import reference_record
from mlh.gpaw.settings import GPAWSettings, baseline_metadata, load_settings
from mlh.inference.prediction import predict_record
from physics.dft.functional import evaluate_dft_functional
from physics.dft.scf import ModelSCFRoute
from tests.models import direct_and_correction
from tests.structures import STRUCTURES

SHARE = 0.4


def first_step_records(name: str):
    """(H0 record, first-step record) of a test structure, n0 on a k-point density grid."""
    build, settings = STRUCTURES[name]
    settings = settings.model_copy(update={"kpts": None, "kpoint_density": 1.5, "task": "baseline"})
    atoms = build()
    return (reference_record(atoms, settings),
            reference_record(atoms, settings.model_copy(update={"first_step_share": SHARE})))


@pytest.fixture(scope="module")
def water_records():
    return first_step_records("water")


@pytest.mark.parametrize("name", ["water", "wse2"])
def test_first_step_baseline_mixes_the_first_scf_step(name, water_records):
    plain, mixed = water_records if name == "water" else first_step_records(name)
    settings = settings_from_record(plain)
    kpts = settings.model_copy(update={"kpoint_density": 1.5}).scf_kpts(plain.cell, plain.pbc)
    first = evaluate_dft_functional(record_atoms(plain), settings,
                                    lambda k, spin: plain.baseline_k(k, spin).toarray(), kpts=kpts,
                                    forces=False, keep_output_hamiltonians=True)
    if name == "wse2":
        assert len(first.kpoints) > 1, "a k grid beyond Γ must be checked"
    for k, H1 in zip(first.kpoints, first.output_hamiltonians[0]):
        kpoint = k if np.any(k) else None
        H0 = plain.baseline_k(kpoint).toarray()
        B = mixed.baseline_k(kpoint).toarray()
        assert np.abs(B - H0).max() > 1e-2  # the step moves H0
        np.testing.assert_allclose(B, H0 + SHARE * (H1 - H0), atol=1e-7)
    assert mixed.provenance["baseline_first_step_share"] == SHARE
    assert mixed.provenance["baseline"].startswith("gpaw first SCF step")
    assert settings_from_record(mixed).first_step_share == SHARE


def test_first_step_settings_and_metadata_are_checked():
    with pytest.raises(MLHError, match="kpts must be unset"):
        load_settings(None, kpts=(2, 2, 2), first_step_share=0.45)
    first_step = GPAWSettings(first_step_share=0.45, kpoint_density=1.0).provenance()
    plain = GPAWSettings().provenance()
    assert baseline_metadata({"a": first_step, "b": first_step}) == {
        "h": 0.2, "first_step_share": 0.45, "kpoint_density": 1.0}
    assert baseline_metadata({"a": plain}) == {"h": 0.2}
    with pytest.raises(MLHError, match="b: baseline_first_step_share 0.0 differs"):
        baseline_metadata({"a": first_step, "b": plain})


def test_a_first_step_model_takes_only_its_own_baseline(water_records):
    plain, mixed = water_records
    direct, correction = direct_and_correction(mixed)
    first_step = replace(correction, metadata={**correction.metadata, "baseline": {
        "h": 0.2, "first_step_share": SHARE, "kpoint_density": 1.5}})
    predicted = predict_record(first_step, mixed, "water.nc")
    np.testing.assert_allclose(predicted.H_onsite - mixed.H0_onsite,
                               predict_record(direct, mixed, "water.nc").H_onsite, atol=1e-10)
    with pytest.raises(MLHError, match="water.nc: its H0 was made with .*'first_step_share': 0.0"):
        predict_record(first_step, plain, "water.nc")
    with pytest.raises(MLHError, match="water.nc: its H0 was made with .*'first_step_share': 0.4"):
        predict_record(correction, mixed, "water.nc")
    # a structure gets the model's first-step baseline
    built = predict_record(first_step, record_atoms(mixed), "water")
    np.testing.assert_allclose(built.H0_onsite, mixed.H0_onsite, atol=1e-8)
    with pytest.raises(MLHError, match="first-step baseline .* the scf route starts from H0 \\+ dH only"):
        ModelSCFRoute(first_step, settings_from_record(plain))
