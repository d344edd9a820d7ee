"""Augmented partitioning (mlh.train.partition, seed 004 section 3.3): slices of a large periodic
record give the model exactly the inputs of the full structure, their targets are the
record's blocks, they round-trip through files, train as ordinary batches, and bad input
gives one clear error.

Structures are defective WSe2 sheets from `mlh.gpaw.structures` (ghost Se vacancies included)
with synthetic H blocks; the model is the tiny configuration of tests/models.py with
seeded random parameters (no slow `Predictor.initialise`). Energies in eV, lengths in Å.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from typer.testing import CliRunner

from mlh.cli.main import app
from mlh.errors import MLHError
from mlh.gpaw.structures import wse2_with_vacancies
from mlh.model.config import MessagePassingConfig, PartitionConfig, TrainConfig
from mlh.model.layouts import OutputLayouts
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import write_record
from mlh.record.realspace import image_pairs
from mlh.train.data import collate, make_sample
from mlh.train.partition import partition_record, partition_sample, slice_height
from mlh.train.partition_io import read_partition, write_partition
from tests.models import BASIS, neutral_scale_shift, random_params, tiny_config
from tests.structures import REPOSITORY

PAD = (512, 16384)
"""(atoms_multiple, edges_multiple): every graph of these tests pads to one shape."""

TOLERANCE = 1e-5
"""|dH| (eV) allowed between slice and full-structure predictions (blocks up to ~6 eV):
float32 rounding if XLA sums the same inputs in another order. Measured on CPU: 0, the
outputs are bit-identical."""

LAYOUTS = OutputLayouts.from_basis(BASIS, ghost_numbers=(34,))


def sheet(repeat=(8, 5), seed: int = 1, vacancies: float = 6.0):
    """A rattled, strained WSe2 sheet (repeat 8x5: 240 sites) with ghost Se vacancies."""
    return wse2_with_vacancies(np.random.default_rng(seed), repeat=repeat, ghosts=True, mean_vacancies=vacancies)


def synthetic_record(atoms, reach: float = 2.6, seed: int = 0, hamiltonian: bool = True) -> HamiltonianRecord:
    """A record of `atoms` with random symmetric on-site and random pair H blocks (pairs within 2 reach)."""
    rng = np.random.default_rng(seed)
    positions, cell, pbc = atoms.positions, atoms.cell.array, atoms.pbc
    pair_i, pair_j, pair_shift = image_pairs(positions, cell, pbc, np.full(len(atoms), reach))
    counts = BASIS.orbital_counts(atoms.numbers)
    onsite = [b + b.T for b in (rng.normal(size=(n, n)) for n in counts)]
    n_pair_values = int((counts[pair_i] * counts[pair_j]).sum())
    return HamiltonianRecord(
        numbers=atoms.numbers, positions=positions, cell=cell, pbc=pbc,
        ghost=np.asarray(atoms.arrays["ghost"], bool), basis=BASIS,
        pair_i=pair_i, pair_j=pair_j, pair_shift=pair_shift, S_pair=np.zeros(n_pair_values),
        S_onsite=np.concatenate([np.eye(n).ravel() for n in counts]),
        H_pair=rng.normal(size=(1, n_pair_values)) if hamiltonian else None,
        H_onsite=np.concatenate([b.ravel() for b in onsite])[None] if hamiltonian else None,
    )


class Model:
    """Tiny GEARS H with random parameters for LAYOUTS, jitted once per message-passing setting."""

    def __init__(self, steps: int = 0) -> None:
        config = tiny_config()
        if steps:
            atom = config.atom_centered.model_copy(
                update={"message_passing": MessagePassingConfig(steps=steps, max_degree=2, num_heads=2,
                                                                qkv_features=8, basis_num=4)}
            )
            config = config.model_copy(update={"atom_centered": atom})
        self.config = config
        stats = neutral_scale_shift(LAYOUTS, config.bond_centered.cutoff)
        shell = Predictor(config, LAYOUTS, stats, None, {})
        self.tables = shell.tables()
        template = jax.eval_shape(shell.model.init, jax.random.PRNGKey(0), *shell._init_inputs())
        self.predictor = shell.with_params(random_params(template, seed=7))
        self.apply = jax.jit(self.predictor.model.apply)

    def predict(self, sample) -> tuple[np.ndarray, np.ndarray]:
        """On-site (N, 2, L, F) and pair (B, 2, L, F) irreps of one sample (eV)."""
        batch = collate([sample], *PAD)
        onsite, offsite, _ = self.apply(
            self.predictor.params, batch.species, batch.edge_center, batch.edge_neighbor, batch.edge_vector,
            batch.bond_i, batch.bond_j, batch.bond_vector, self.tables,
        )
        return np.asarray(onsite)[: sample.graph.n_atoms], np.asarray(offsite)[: sample.graph.n_bonds]


def bond_keys(sample, image_atom=None) -> list[tuple]:
    """(i, j, R) of each bond in record atom indices."""
    g = sample.graph
    atom = np.arange(g.n_atoms) if image_atom is None else image_atom
    return [(int(atom[i]), int(atom[j]), *map(int, r)) for i, j, r in zip(g.bond_i, g.bond_j, g.bond_shift)]


@pytest.fixture(scope="module")
def record():
    return synthetic_record(sheet())


@pytest.fixture(scope="module")
def model():
    return Model()


# --------------------------------------------------------------- 1. exact inputs


@pytest.mark.parametrize("axis, thickness", [(0, 3.0), (1, 7.5)])
def test_slices_predict_what_the_full_structure_predicts(record, model, axis, thickness):
    """Labelled on-site and pair blocks of every slice equal the full structure's (float32)."""
    config = model.config
    full = make_sample(record, LAYOUTS, config.atom_centered.radial_basis.cutoff, config.bond_centered.cutoff)
    full_on, full_off = model.predict(full)
    full_bonds = {key: b for b, key in enumerate(bond_keys(full))}
    partitions = partition_record(record, PartitionConfig(axis=axis, thickness=thickness), config, "sheet")
    assert len(partitions) == int(slice_height(record.cell, axis) // thickness) >= 3
    seen_atoms, seen_bonds, worst = [], [], 0.0
    for partition in partitions:
        sample = partition_sample(partition, LAYOUTS, config, "slice")
        on, off = model.predict(sample)
        labelled = partition.image_atom[: partition.n_labelled]
        worst = max(worst, np.abs(on[: partition.n_labelled] - full_on[labelled]).max())
        index = [full_bonds[key] for key in bond_keys(sample, partition.image_atom)]
        worst = max(worst, np.abs(off - full_off[index]).max(initial=0.0))
        seen_atoms.extend(labelled.tolist())
        seen_bonds.extend(index)
        assert partition.n_atoms > partition.n_labelled  # augmented with virtual atoms
    assert sorted(seen_atoms) == list(range(record.n_atoms))  # every atom labelled once
    assert sorted(seen_bonds) == list(range(full.graph.n_bonds))  # every pair labelled once
    assert worst < TOLERANCE, worst
    assert np.abs(full_off).max() > 0.1


@pytest.mark.slow
def test_message_passing_widens_the_slices_and_stays_exact():
    """With one message-passing step, slices carry one more neighbourhood and stay exact (~30 s)."""
    model = Model(steps=1)
    config = model.config
    record = synthetic_record(sheet(repeat=(5, 3), vacancies=2.0))
    full = make_sample(record, LAYOUTS, config.atom_centered.radial_basis.cutoff, config.bond_centered.cutoff)
    full_on, full_off = model.predict(full)
    full_bonds = {key: b for b, key in enumerate(bond_keys(full))}
    local = partition_record(record, PartitionConfig(axis=0, count=4), tiny_config(), "sheet")
    for partition, narrow in zip(partition_record(record, PartitionConfig(axis=0, count=4), config, "s"), local):
        assert partition.n_atoms > narrow.n_atoms
        sample = partition_sample(partition, LAYOUTS, config, "slice")
        on, off = model.predict(sample)
        labelled = partition.image_atom[: partition.n_labelled]
        np.testing.assert_allclose(on[: partition.n_labelled], full_on[labelled], rtol=0, atol=TOLERANCE)
        index = [full_bonds[key] for key in bond_keys(sample, partition.image_atom)]
        np.testing.assert_allclose(off, full_off[index], rtol=0, atol=TOLERANCE)


# ------------------------------------------------------------ 2. targets and files


def test_targets_are_the_records_blocks(record, tmp_path):
    """Slice targets equal the full record's targets for labelled atoms and pairs; files round-trip."""
    config = tiny_config()
    full = make_sample(record, LAYOUTS, config.atom_centered.radial_basis.cutoff, config.bond_centered.cutoff)
    full_bonds = {key: b for b, key in enumerate(bond_keys(full))}
    for partition in partition_record(record, PartitionConfig(axis=0, count=3), config, "sheet"):
        path = write_partition(partition, tmp_path / f"part-{partition.index}.nc")
        again = read_partition(path)
        for field in dataclasses.fields(partition):
            a, b = getattr(partition, field.name), getattr(again, field.name)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b, err_msg=field.name)
            else:
                assert a == b, field.name
        sample = partition_sample(again, LAYOUTS, config, str(path))
        n = partition.n_labelled
        np.testing.assert_array_equal(sample.onsite[:n], full.onsite[partition.image_atom[:n]])
        assert not sample.onsite[n:].any()
        index = [full_bonds[key] for key in bond_keys(sample, partition.image_atom)]
        np.testing.assert_array_equal(sample.offsite, full.offsite[index])
        batch = collate([sample], *PAD)
        assert batch.atom_mask.sum() == n and batch.bond_mask.sum() == sample.graph.n_bonds


def test_slice_files_are_reused_until_the_record_or_settings_change(tmp_path):
    from mlh.train.partition_io import partition_files

    path = write_record(synthetic_record(sheet(repeat=(3, 2), vacancies=0.0)), tmp_path / "sheet.nc")
    logs: list[str] = []
    made = partition_files(path, PartitionConfig(axis=0, count=2), tiny_config(), tmp_path / "slices", logs.append)
    again = partition_files(path, PartitionConfig(axis=0, count=2), tiny_config(), tmp_path / "slices", logs.append)
    assert again == made and len(logs) == 1  # reused
    other = partition_files(path, PartitionConfig(axis=1, count=2), tiny_config(), tmp_path / "slices", logs.append)
    assert other[0].parent != made[0].parent and all(f.is_file() for f in made)  # both kept
    write_record(synthetic_record(sheet(repeat=(3, 2), vacancies=0.0), seed=1), path)
    partition_files(path, PartitionConfig(axis=0, count=2), tiny_config(), tmp_path / "slices", logs.append)
    assert len(logs) == 3  # the record changed: sliced again


# ---------------------------------------------------------------- 3. bad input


@pytest.mark.parametrize(
    "change, config, message",
    [
        ({}, {"axis": 2, "count": 2}, "cell axis 2 is not periodic"),
        ({}, {"axis": 0, "thickness": 0.2},
         r"slice \d+ of \d+ \(0.2\d* Å thick along axis 0\) holds no atoms \(the widest atom-free layer is "
         r"[\d.]+ Å\); use thicker or fewer slices"),
        ({"hamiltonian": False}, {"axis": 0, "count": 2}, "no Hamiltonian \\(overlap-only\\)"),
    ],
)
def test_bad_partitions_are_reported(change, config, message):
    record = synthetic_record(sheet(repeat=(3, 2), vacancies=0.0), **change)
    with pytest.raises(MLHError, match=message):
        partition_record(record, PartitionConfig(**config), tiny_config(), "sheet")


def test_slices_for_other_cutoffs_are_refused(record):
    partition = partition_record(record, PartitionConfig(axis=0, count=2), tiny_config(), "sheet")[0]
    with pytest.raises(MLHError, match="slice made for atom/bond cutoffs 4.5/5.0 Å"):
        partition_sample(partition, LAYOUTS, TrainConfig().model, "slice")


runner = CliRunner()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--axis", "0", "--thickness", "-1"], "thickness: Input should be greater than 0"),
        (["--axis", "3", "--count", "2"], "axis: Input should be less than or equal to 2"),
        (["--axis", "0"], "give exactly one of thickness and count"),
        (["--axis", "2", "--count", "2"], "cell axis 2 is not periodic"),
    ],
)
def test_partition_command_reports_bad_input(tmp_path, options, message):
    path = write_record(synthetic_record(sheet(repeat=(3, 2), vacancies=0.0)), tmp_path / "sheet.nc")
    result = runner.invoke(app, ["partition", str(path), "-o", str(tmp_path / "out"), *options])
    assert result.exit_code == 1
    assert message in result.output
    assert not list((tmp_path / "out").glob("*/*.nc"))


def test_partition_command_writes_slices(tmp_path):
    path = write_record(synthetic_record(sheet(repeat=(3, 2), vacancies=0.0)), tmp_path / "sheet.nc")
    (tmp_path / "train.yaml").write_text(f"model: {tiny_config().model_dump_json()}\n")
    args = ["partition", str(path), "-o", str(tmp_path / "out"), "--axis", "1", "--thickness", "4",
            "--config", str(tmp_path / "train.yaml")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "out").glob("*/part-*.nc"))
    assert len(files) == 2 and "2 slices" in result.output
    assert read_partition(files[0]).atom_cutoff == tiny_config().atom_centered.radial_basis.cutoff


# ------------------------------------------------------------------- 4. training


@pytest.mark.slow
def test_slices_in_one_step_give_the_full_records_loss(record, model):
    """All slices of a record in one data-parallel step: the loss of the whole record (~100 s:
    two compilations of a training step)."""
    from mlh.train.loop import _Steps

    config = TrainConfig.model_validate({"model": model.config.model_dump(), "optimizer": {"name": "adam"}})
    steps = _Steps(model.predictor, config, n_train=1)
    assert steps.n_devices == len(jax.local_devices())
    params = model.predictor.params
    cutoffs = model.config.atom_centered.radial_basis.cutoff, model.config.bond_centered.cutoff
    full = collate([make_sample(record, LAYOUTS, *cutoffs)], *PAD)
    _, _, loss_full, parts_full = steps.train(params, steps.optimizer.init(params), full, model.tables)
    samples = [partition_sample(p, LAYOUTS, model.config, "slice")
               for p in partition_record(record, PartitionConfig(axis=0, count=4), model.config, "sheet")]
    sliced = collate(samples, 2048, 32768)
    _, _, loss, parts = steps.train_parallel(params, steps.optimizer.init(params), [sliced], model.tables)
    np.testing.assert_allclose(float(loss), float(loss_full), rtol=1e-5)
    for key in ("mse_onsite", "mse_offsite"):
        np.testing.assert_allclose(np.asarray(parts[key]).ravel(), float(parts_full[key]), rtol=1e-5)


TWO_DEVICES = """
import numpy as np, jax
from tests.mlh.train.test_partition import *
from mlh.train.loop import _Steps
model = Model()
config = TrainConfig.model_validate({"model": model.config.model_dump(), "optimizer": {"name": "adam"}})
steps = _Steps(model.predictor, config, n_train=1)
assert steps.n_devices == 2, steps.n_devices
record = synthetic_record(sheet(repeat=(4, 3), vacancies=2.0))
slices = partition_record(record, PartitionConfig(axis=0, count=4), model.config, "sheet")
samples = [partition_sample(p, LAYOUTS, model.config, "slice") for p in slices]
first, second = collate(samples[:2], *PAD), collate(samples[2:], *PAD)
params = model.predictor.params
alone = [float(steps.evaluate(params, b, model.tables)[2]) for b in (first, second)]
_, _, both, _ = steps.train_parallel(params, steps.optimizer.init(params), [first, second], model.tables)
_, _, one, _ = steps.train_parallel(params, steps.optimizer.init(params), [first], model.tables)
np.testing.assert_allclose(float(both), np.mean(alone), rtol=1e-5)
np.testing.assert_allclose(float(one), alone[0], rtol=1e-5)
print("two devices ok")
"""


@pytest.mark.slow
def test_two_devices_share_a_step():
    """With two (forced host) devices, a step's loss is the mean of its two batches' losses (~2 min)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", TWO_DEVICES], cwd=REPOSITORY, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "two devices ok" in result.stdout


PROVENANCE = {"xc": "PBE", "basis": "szp(dzp)", "setups": "{W: '6'}"}
"""GPAW settings a model records from its training data (synthetic records need them too)."""


@pytest.mark.slow
def test_training_streams_slices_and_resumes(tmp_path):
    """`train` with data.partition: slices written once and reused on resume; the validation MAE
    over labelled blocks is the full record's MAE (~3 min: model initialisation and compilation)."""
    from mlh.inference.metrics import matrix_element_errors
    from mlh.inference.prediction import predict_record
    from mlh.train.loop import train

    record = dataclasses.replace(synthetic_record(sheet(repeat=(4, 3), vacancies=2.0)), provenance=PROVENANCE)
    path = write_record(record, tmp_path / "sheet.nc")
    data = {"train_path": [str(path)], "valid_path": [str(path)], "batch_size": 2, "bond_fraction": 1.0,
            "atoms_pad_multiple": 256, "nl_pad_multiple": 4096, "partition": {"axis": 0, "thickness": 3.0}}
    config = TrainConfig.model_validate({"output": str(tmp_path / "run"), "n_epochs": 1, "data": data,
                                         "model": tiny_config().model_dump(), "optimizer": {"name": "adam"}})
    logs: list[str] = []
    predictor = train(config, progress=False, log=logs.append)
    assert any("sheet.nc: 4 slices of" in line and "along axis 0" in line for line in logs), logs
    assert predictor.metadata["partition"] == {"axis": 0, "thickness": 3.0, "count": None}
    row = dict(zip(*[line.split(",") for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()]))
    errors = matrix_element_errors(predict_record(predictor, record), record)
    np.testing.assert_allclose(float(row["mae_onsite_meV"]), 1000 * float(errors["mae_onsite"]), rtol=1e-4)

    logs.clear()
    train(config.model_copy(update={"n_epochs": 2}), progress=False, log=logs.append)
    assert "resuming after epoch 1" in logs and not any("slices of" in line for line in logs)
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 3
