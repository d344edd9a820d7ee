"""Small model configurations, bases and parameters shared by the predictor tests (eV, Å)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from mlh.model.config import AtomCenteredConfig, BondCenteredConfig, MLPConfig, ModelConfig, RadialBasisConfig
from mlh.model.layouts import OutputLayouts
from mlh.model.scale_shift import SHIFT_SPACING, ScaleShift
from mlh.record.basis import Basis, SpeciesBasis

ATOM_CUTOFF = 4.5
BOND_CUTOFF = 5.0

TINY_MODEL = {
    "atom_centered": {
        "radial_basis": {"cutoff": 6.0, "num_radial": 8, "max_degree": 2, "num_elemental_embedding": 8},
        "max_tensordense_degree": 2,
        "num_tensordense_features": 8,
    },
    "bond_centered": {"cutoff": 6.0, "max_degree": 2, "expansion_num": 8, "expansion_max_degree": 2},
    "mlp": {"layer_widths": [16, 16]},
}

BASIS = Basis(
    "wse2-like",
    (
        SpeciesBasis(34, (0, 1, 2), (3.5, 3.8, 3.8), ("4s", "4p", "d pol")),
        SpeciesBasis(74, (0, 2, 1), (4.2, 3.6, 4.2), ("6s", "5d", "p pol")),
    ),
)


def tiny_config() -> ModelConfig:
    """A CPU-friendly model configuration (degree 2, a few features) for ATOM_CUTOFF/BOND_CUTOFF."""
    return ModelConfig(
        atom_centered=AtomCenteredConfig(
            radial_basis=RadialBasisConfig(
                cutoff=ATOM_CUTOFF, num_radial=6, max_degree=2, num_elemental_embedding=8
            ),
            num_tensordenses=1,
            max_tensordense_degree=2,
            num_tensordense_features=4,
        ),
        bond_centered=BondCenteredConfig(
            cutoff=BOND_CUTOFF, max_degree=2, expansion_num=6, expansion_max_degree=2
        ),
        mlp=MLPConfig(layer_widths=[8, 8], activation="bent_identity"),
    )


def neutral_scale_shift(layouts: OutputLayouts, bond_cutoff: float, seed: int = 0) -> ScaleShift:
    """Scales 1 and on-site shifts 0; random off-site shift coefficients on the even scalars.

    Only stored even-scalar entries get a shift (as `fit_scale_shift` does): a constant
    added to an entry of degree L > 0 would break rotational equivariance.
    """
    rng = np.random.default_rng(seed)
    s = layouts.n_species
    size_on = int(np.prod(layouts.onsite_shape))
    size_off = int(np.prod(layouts.offsite_shape))
    centres = np.arange(0.0, bond_cutoff + SHIFT_SPACING / 2, SHIFT_SPACING)
    offsite_shift = np.zeros((s, s, size_off, len(centres)))
    for a in range(s):
        for b in range(s):
            scalar = np.zeros(layouts.offsite_shape, bool)
            scalar[0, 0, :] = True
            entries = np.flatnonzero((layouts.offsite_mask[a, b] & scalar).ravel())
            offsite_shift[a, b][entries] = rng.normal(0.0, 0.5, (len(entries), len(centres)))
    assert np.count_nonzero(offsite_shift) > 0
    return ScaleShift(
        numbers=np.asarray(layouts.numbers),
        onsite_scale=np.ones((s, size_on)),
        onsite_shift=np.zeros((s, size_on)),
        offsite_scale=np.ones((s, s, size_off)),
        offsite_shift=offsite_shift,
        shift_centres=centres,
        shift_width=SHIFT_SPACING,
        n_structures=1,
    )


def random_params(template: Any, seed: int) -> Any:
    """Random float32 parameters of the tree `template` (ShapeDtypeStructs), seed-dependent."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = path[-1].key
        shape = leaf.shape
        if name == "scale":
            value = 1.0 + 0.2 * rng.normal(size=shape)
        elif name == "bias":
            value = 0.3 * rng.normal(size=shape)
        elif name == "embedding":
            value = rng.normal(size=shape)
        elif len(shape) == 2:
            value = rng.normal(size=shape) / np.sqrt(shape[0])
        else:  # tensor-product kernels (p1, L1, p2, L2, p3, L3, F)
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:4]))
        return value.astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, template)


def direct_and_correction(record, seed: int = 3):
    """(direct, correction) tiny predictors for a record's basis with the same random
    parameters (seed), so the correction model's dH equals the direct model's H; the
    metadata carries the record's GPAW settings and h = 0.2 Å for H0."""
    from mlh.gpaw.settings import settings_from_provenance
    from mlh.model.predictor import Predictor

    layouts = OutputLayouts.from_basis(record.basis)
    config = tiny_config()
    shell = Predictor(config, layouts, neutral_scale_shift(layouts, config.bond_centered.cutoff), None, {})
    template = jax.eval_shape(shell.model.init, jax.random.PRNGKey(0), *shell._init_inputs())
    metadata = {"gpaw": settings_from_provenance(record.provenance), "baseline": {"h": 0.2}}
    direct = shell.with_params(random_params(template, seed=seed), metadata)
    correction = Predictor(config.model_copy(update={"target": "correction"}), layouts, direct.stats,
                           direct.params, metadata)
    return direct, correction


def with_random_potential(predictor, seed: int = 5):
    """The predictor with `atom_potential` switched on and a random potential readout (its
    other parameters kept), so its potential levels are ~0.1 eV and differ between atoms."""
    from mlh.model.predictor import Predictor

    config = predictor.config.model_copy(update={"atom_potential": True})
    shell = Predictor(config, predictor.layouts, predictor.stats, None, predictor.metadata)
    template = jax.eval_shape(shell.model.init, jax.random.PRNGKey(0), *shell._init_inputs())
    readout = random_params({"params": {"potential_readout": template["params"]["potential_readout"]}},
                            seed)["params"]
    params = {"params": {**predictor.params["params"], **readout}}
    return shell.with_params(params)
