"""Training of the GEARS H predictor: loss, optimizer, checkpoints and the epoch loop."""

from mlh.train.loop import train

__all__ = ["train"]
