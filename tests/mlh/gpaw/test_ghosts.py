"""Ghost atoms (vacancies kept as basis functions without potential) are species of their own:
in the layouts, the training samples, the statistics, and inference. Energies in eV.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase.build import molecule

from mlh.errors import MLHError
from mlh.model.config import TrainConfig
from mlh.model.layouts import OutputLayouts
from mlh.model.scale_shift import read_scale_shift, write_scale_shift
from mlh.record.basis import Basis, SpeciesBasis
from mlh.record.io import write_record
from mlh.train.data import make_sample
from mlh.train.statistics import dataset_layouts
from tests.models import TINY_MODEL
from tests.synthetic import random_record

BASIS = Basis(
    "test",
    (
        SpeciesBasis(1, (0, 1), (3.0, 3.0), ("1s", "p pol")),
        SpeciesBasis(8, (0, 1, 2), (2.5, 2.8, 2.8), ("2s", "2p", "d pol")),
    ),
)


def test_ghost_species_have_their_own_index():
    layouts = OutputLayouts.from_basis(BASIS, ghost_numbers=(1,))
    assert layouts.numbers == (1, 1, 8) and layouts.ghosts == (False, True, False)
    assert layouts.species_names == ["H", "H(ghost)", "O"]
    index = layouts.species_index(np.array([8, 1, 1]), "water", np.array([False, True, False]))
    assert index.tolist() == [2, 1, 0]
    assert layouts.ls(1) == layouts.ls(0)  # a ghost has its element's basis
    with pytest.raises(MLHError, match=r"water: species O \(ghost\) not known to the model \(it knows H, H\(ghost\), O\)"):
        layouts.species_index(np.array([8, 1]), "water", np.array([True, False]))


def test_layouts_without_ghosts_read_as_before():
    """model.json of models made before ghost species (no "ghosts" key) load unchanged."""
    layouts = OutputLayouts.from_basis(BASIS)
    old = {k: v for k, v in layouts.to_dict().items() if k != "ghosts"}
    assert OutputLayouts(basis=BASIS, **old) == layouts and layouts.ghosts == (False, False)
    ghosts = OutputLayouts.from_basis(BASIS, ghost_numbers=(8,))
    assert OutputLayouts(basis=BASIS, **ghosts.to_dict()) == ghosts
    with pytest.raises(MLHError, match="species must be unique and sorted"):
        OutputLayouts(basis=BASIS, **{**ghosts.to_dict(), "ghosts": [True, False, False]})


def test_records_with_ghosts_train_ghost_species(tmp_path):
    """dataset_layouts adds a ghost species per element with ghosts; samples and statistics use it."""
    records = [random_record(seed, n_atoms=6) for seed in range(3)]
    assert any(r.ghost.any() for r in records)
    files = [write_record(r, tmp_path / f"r{n}.nc") for n, r in enumerate(records)]
    layouts = dataset_layouts(files)
    ghost_numbers = sorted({int(z) for r in records for z in r.numbers[r.ghost]})
    assert [z for z, g in zip(layouts.numbers, layouts.ghosts) if g] == ghost_numbers
    for record in records:
        species = make_sample(record, layouts, 4.0, 4.0).graph.species
        assert np.array_equal(np.asarray(layouts.ghosts)[species], record.ghost)
        assert np.array_equal(np.asarray(layouts.numbers)[species], record.numbers)

    from mlh.train.statistics import analyze_files

    _, stats, _ = analyze_files(files, TrainConfig.model_validate({"model": TINY_MODEL}).model)
    write_scale_shift(stats, tmp_path / "scale_shift.nc")
    again = read_scale_shift(tmp_path / "scale_shift.nc")
    assert tuple(again.numbers.tolist()) == layouts.numbers
    np.testing.assert_array_equal(again.onsite_shift, stats.onsite_shift)


@pytest.mark.gpaw
@pytest.mark.slow
def test_ghost_hydrogen_is_learned_and_predicted_as_its_own_species(tmp_path):
    """GPAW water with one H kept as a ghost -> 3 training epochs -> inference from the record and
    from the structure: the ghost's on-site block follows the GPAW ghost's, far from a real H's
    (~2 min: GPAW, model initialisation, compilation)."""
    from mlh.gpaw.reference import reference_record
    from mlh.gpaw.settings import GPAWSettings
    from mlh.inference.prediction import predict_record
    from mlh.train.loop import train

    atoms = molecule("H2O", vacuum=3.5)
    atoms.arrays["ghost"] = np.array([False, False, True])
    record = reference_record(atoms, GPAWSettings(forces=False))
    path = write_record(record, tmp_path / "water.nc")
    data = {"train_path": [str(path)], "valid_fraction": 0.0, "bond_fraction": 1.0,
            "atoms_pad_multiple": 8, "nl_pad_multiple": 256}
    config = TrainConfig.model_validate(
        {"output": str(tmp_path / "run"), "n_epochs": 3, "data": data, "model": TINY_MODEL}
    )
    predictor = train(config, progress=False, log=lambda _: None)
    assert predictor.layouts.species_names == ["H", "H(ghost)", "O"]

    predicted = predict_record(predictor, record, "water")
    real, ghost = 1, 2

    def scalars(r, atom):
        """(s-s element, mean p diagonal) of an H on-site block (eV)."""
        block = r.onsite_block(r.H_onsite[0], atom)
        return np.array([block[0, 0], np.diag(block)[1:].mean()])

    assert np.abs(scalars(record, ghost) - scalars(record, real)).max() > 1.0  # GPAW: a ghost is no H
    np.testing.assert_allclose(scalars(predicted, ghost), scalars(record, ghost), atol=0.05)
    np.testing.assert_allclose(scalars(predicted, real), scalars(record, real), atol=0.05)

    from_structure = predict_record(predictor, atoms, "water")
    assert from_structure.ghost.tolist() == [False, False, True]
    np.testing.assert_allclose(from_structure.H_onsite, predicted.H_onsite, atol=1e-6)

    atoms.arrays["ghost"] = np.array([True, False, False])
    model = re.escape(str(tmp_path / "run" / "model"))
    with pytest.raises(MLHError, match=rf"water: species O \(ghost\) not known to {model} \(it knows H, H\(ghost\), O\)"):
        predict_record(predictor, atoms, "water")
