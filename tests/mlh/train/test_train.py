"""Training on tiny real GPAW datasets: the loss falls, a run stopped by its time limit resumes
exactly, one structure overfits."""

from __future__ import annotations

import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.inference.metrics import matrix_element_errors
from mlh.inference.prediction import predict_record
from mlh.model.config import TrainConfig
from mlh.record.io import read_record, write_record
from mlh.train.loop import train
from tests.models import TINY_MODEL


def tiny_config(tmp_path, records, **overrides) -> TrainConfig:
    data = {
        "train_path": [str(p) for p in records],
        "valid_path": [str(records[0])],
        "atoms_pad_multiple": 8,
        "nl_pad_multiple": 256,
        "bond_fraction": 1.0,
    }
    data.update(overrides.pop("data", {}))
    settings = {"output": str(tmp_path / "run"), "n_epochs": 4, "data": data, "model": TINY_MODEL}
    return TrainConfig.model_validate({**settings, **overrides})


@pytest.fixture(scope="module")
def wse2_files(gpaw_records, tmp_path_factory):
    folder = tmp_path_factory.mktemp("wse2_records")
    _, record = gpaw_records("wse2")
    return [write_record(record, folder / "wse2.nc")]


@pytest.fixture(scope="module")
def water_files(gpaw_records, tmp_path_factory):
    folder = tmp_path_factory.mktemp("water_records")
    _, record = gpaw_records("water")
    return [write_record(record, folder / "water.nc")]


def _history(folder):
    lines = (folder / "metrics.csv").read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, line.split(","))) for line in lines[1:]]


def test_loss_falls_and_a_time_limited_run_resumes_exactly(tmp_path, wse2_files):
    config = tiny_config(tmp_path / "straight", wse2_files, optimizer={"name": "adam", "lr": 0.005})
    straight = train(config, progress=False, log=lambda _: None)
    losses = [float(row["train_loss"]) for row in _history(config.output)]
    assert losses[-1] < 0.75 * losses[0]
    assert int(_history(config.output)[-1]["compilations"]) <= 2
    assert float(_history(config.output)[-1]["step_memory_mib"]) > 0  # XLA's step memory

    interrupted = tiny_config(tmp_path / "resumed", wse2_files, optimizer={"name": "adam", "lr": 0.005})
    train(interrupted, progress=False, log=lambda _: None, time_limit=1e-6)  # stops after epoch 1
    assert len(_history(interrupted.output)) == 1 and "valid_loss" in _history(interrupted.output)[0]
    resumed = train(interrupted, progress=False, log=lambda _: None)  # resumes without the limit
    for a, b in zip(_leaves(straight.params), _leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)


def _leaves(params):
    import jax

    return [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]


def test_corrupt_checkpoint_is_reported(tmp_path, wse2_files):
    config = tiny_config(tmp_path, wse2_files, n_epochs=1)
    (config.output).mkdir(parents=True)
    (config.output / "checkpoint.msgpack").write_bytes(b"not a checkpoint")
    with pytest.raises(MLHError, match="checkpoint.msgpack: corrupt"):
        train(config, progress=False, log=lambda _: None)


def test_gauge_invariant_loss_trains(tmp_path, wse2_files):
    config = tiny_config(tmp_path, wse2_files, loss={"gauge_invariant": True},
                         optimizer={"name": "adam", "lr": 0.005})
    train(config, progress=False, log=lambda _: None)
    losses = [float(row["train_loss"]) for row in _history(config.output)]
    assert len(losses) == 4 and losses[-1] < 0.75 * losses[0]


def test_atom_potential_trains_and_inference_applies_it_as_training_does(tmp_path, wse2_files):
    """The potential readout starts at zero and learns; predict_record's H (term added with
    the record's S values) has the on-site error training measured (term added in irreps)."""
    config = tiny_config(tmp_path, wse2_files, model={**TINY_MODEL, "atom_potential": True},
                         optimizer={"name": "adam", "lr": 0.005})
    model = train(config, progress=False, log=lambda _: None)
    losses = [float(row["train_loss"]) for row in _history(config.output)]
    assert losses[-1] < 0.75 * losses[0]
    assert np.abs(model.params["params"]["potential_readout"]["kernel"]).max() > 0
    record = read_record(wse2_files[0])
    errors = matrix_element_errors(predict_record(model, record), record)
    assert 1000 * float(errors["mae_onsite"]) == pytest.approx(
        model.metadata["best"]["mae_onsite_meV"], rel=1e-4)
    with pytest.raises(ValueError, match="atom_potential needs the overlap of whole records"):
        tiny_config(tmp_path, wse2_files, model={**TINY_MODEL, "atom_potential": True},
                    data={"partition": {"thickness": 4.0}})


@pytest.mark.slow
def test_overfits_one_structure_below_1_meV(tmp_path, water_files, gpaw_records):
    """~3 min on 2 cores: 3,500 full-batch steps on the water molecule (reaches ~0.3 meV)."""
    model = {
        **TINY_MODEL,
        "atom_centered": {**TINY_MODEL["atom_centered"], "num_tensordense_features": 16},
        "mlp": {"layer_widths": [32, 32]},
    }
    config = tiny_config(
        tmp_path,
        water_files,
        n_epochs=3500,
        valid_every=3500,
        checkpoint_every=3500,
        model=model,
        optimizer={
            "name": "adam",
            "lr": 0.003,
            "schedule": {"factor": 0.5, "patience": 10, "cooldown": 0, "accumulation_size": 10, "min_scale": 1e-3},
        },
    )
    predictor = train(config, progress=False, log=lambda _: None)
    _, reference = gpaw_records("water")
    errors = matrix_element_errors(predict_record(predictor, reference), reference)
    assert float(errors["mae_all"]) < 1e-3


def test_fine_tuning_starts_from_the_given_model(tmp_path, wse2_files):
    first = train(tiny_config(tmp_path / "first", wse2_files, n_epochs=2), progress=False, log=lambda _: None)
    model = tmp_path / "first" / "run" / "model"
    tuned = train(tiny_config(tmp_path / "tuned", wse2_files, n_epochs=1, init_model=str(model),
                              optimizer={"name": "adam", "lr": 1e-9}), progress=False, log=lambda _: None)
    for a, b in zip(_leaves(first.params), _leaves(tuned.params)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_array_equal(first.stats.onsite_scale, tuned.stats.onsite_scale)
    assert tuned.metadata["init_model"]["model_sha256"] == first.digest

    other = {**TINY_MODEL, "mlp": {**TINY_MODEL["mlp"], "layer_widths": [8]}}
    with pytest.raises(MLHError, match="model settings differ"):
        train(tiny_config(tmp_path / "other", wse2_files, init_model=str(model), model=other),
              progress=False, log=lambda _: None)

    from mlh.model.ensemble import write_ensemble

    write_ensemble(tmp_path / "committee", [model, model])
    with pytest.raises(MLHError, match="a committee cannot be fine-tuned"):
        train(tiny_config(tmp_path / "from_committee", wse2_files, init_model=str(tmp_path / "committee")),
              progress=False, log=lambda _: None)
