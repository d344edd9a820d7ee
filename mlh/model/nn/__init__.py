"""The GEARS H network in flax + e3x (seed 001, supplementary S2).

Nothing here changes JAX or e3x global configuration; every e3x module is built with
`cartesian_order=False`, the order of mlh's irreps layouts.
"""

from mlh.model.nn.model import GearsH, OutputTables

__all__ = ["GearsH", "OutputTables"]
