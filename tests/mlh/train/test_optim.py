"""The training optimizer's plateau schedule: windows of steps, or one epoch."""

import jax.numpy as jnp
import pytest

from mlh.errors import MLHError
from mlh.model.config import OptimizerConfig, TrainConfig
from mlh.train.optim import learning_rate_scale, make_optimizer


def scales(accumulation_size, steps_per_epoch: int, n_steps: int = 12) -> list[float]:
    """Learning-rate scale after each of `n_steps` steps with a loss that never improves."""
    config = OptimizerConfig.model_validate({"name": "adam", "schedule": {
        "factor": 0.5, "patience": 1, "cooldown": 0, "accumulation_size": accumulation_size}})
    optimizer = make_optimizer(config, steps_per_epoch=steps_per_epoch)
    params = {"w": jnp.ones(2)}
    state = optimizer.init(params)
    out = []
    for _ in range(n_steps):
        _, state = optimizer.update({"w": jnp.ones(2)}, state, params, value=jnp.asarray(1.0))
        out.append(learning_rate_scale(state))
    return out


def test_epoch_window_is_one_epoch_of_steps():
    by_epoch = scales("epoch", steps_per_epoch=3)
    assert by_epoch == scales(3, steps_per_epoch=99)
    assert by_epoch[-1] < 1.0
    assert by_epoch != scales("epoch", steps_per_epoch=4)


def test_accumulation_size_must_be_positive_or_epoch():
    with pytest.raises((MLHError, ValueError), match="accumulation_size"):
        TrainConfig.model_validate({"optimizer": {"schedule": {"accumulation_size": "week"}}})
    with pytest.raises((MLHError, ValueError), match="accumulation_size"):
        TrainConfig.model_validate({"optimizer": {"schedule": {"accumulation_size": 0}}})
