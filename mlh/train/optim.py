"""Optimizer of the training loop (seed 001, S3.5): clipping, adan / lamb / adam(w), reduce on plateau."""

from __future__ import annotations

import optax
import optax.contrib

from mlh.model.config import OptimizerConfig

__all__ = ["make_optimizer", "learning_rate_scale"]


def make_optimizer(config: OptimizerConfig, steps_per_epoch: int) -> optax.GradientTransformationExtraArgs:
    """Gradient clipping (global norm), then the optimizer, then the plateau schedule
    (`steps_per_epoch` is its window when accumulation_size is "epoch").

    The update needs `value=loss` (the reduce-on-plateau schedule watches it).
    """
    optimizers = {
        "adan": lambda: optax.adan(config.lr, weight_decay=config.weight_decay),
        "lamb": lambda: optax.lamb(config.lr, weight_decay=config.weight_decay),
        "adam": lambda: optax.adam(config.lr),
        "adamw": lambda: optax.adamw(config.lr, weight_decay=config.weight_decay),
    }
    parts = []
    if config.gradient_clip is not None:
        parts.append(optax.clip_by_global_norm(config.gradient_clip))
    parts.append(optimizers[config.name]())
    schedule = config.schedule
    if schedule.name == "reduce_on_plateau":
        parts.append(
            optax.contrib.reduce_on_plateau(
                factor=schedule.factor,
                patience=schedule.patience,
                rtol=schedule.rtol,
                atol=schedule.atol,
                cooldown=schedule.cooldown,
                accumulation_size=(steps_per_epoch if schedule.accumulation_size == "epoch"
                                   else schedule.accumulation_size),
                min_scale=schedule.min_scale,
            )
        )
    return optax.chain(*parts)


def learning_rate_scale(opt_state) -> float:
    """Current reduce-on-plateau scale of the learning rate (1.0 without the schedule)."""
    for state in opt_state:
        if isinstance(state, optax.contrib.ReduceLROnPlateauState):
            return float(state.scale)
    return 1.0
