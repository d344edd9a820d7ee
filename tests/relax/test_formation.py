"""relax.formation, relax.optimize and the example drivers' handling of bad input."""

import runpy
import shutil
import sys

import numpy as np
import pytest
import xarray as xr
from ase.build import bulk, mx2
from ase.calculators.emt import EMT
from ase.io import read

from mlh.errors import MLHError
from mlh.record.io import write_dataset
from relax.formation import (
    DefectEnergy,
    exchanged_atoms,
    formation_energies,
    reference_energy_per_atom,
)
from relax.optimize import relax, relaxation_dataset
from tests.structures import EXAMPLES


def wse2_host():
    atoms = mx2("WSe2", a=3.32, thickness=3.2, vacuum=4.0).repeat((2, 2, 1))
    atoms.pbc = (True, True, False)
    return atoms


def test_exchanged_atoms_of_vacancies_and_antisites():
    host = wse2_host()
    vacancy = host.copy()
    del vacancy[[1, 2]]                       # two Se
    assert exchanged_atoms(host, vacancy) == {"Se": 2}
    antisite = host.copy()
    antisite.symbols[1] = "W"                 # Se -> W
    assert exchanged_atoms(host, antisite) == {"Se": 1, "W": -1}
    strained = vacancy.copy()
    strained.set_cell(vacancy.cell * 1.01)
    with pytest.raises(MLHError, match="different cells"):
        exchanged_atoms(host, strained)


def test_formation_energy_equation_and_dataset_round_trip(tmp_path):
    defects = [DefectEnergy("V_Se", -30.0, {"Se": 1}, attrs={"steps": 12}),
               DefectEnergy("W_Se", -33.5, {"Se": 1, "W": -1})]
    dataset = formation_energies(-35.0, defects, reference_energies={"Se": -3.5, "W": -13.0},
                                 chemical_potentials={"Se": -0.5}, attrs={"route": "jax"})
    # E_f = E_d - E_host + sum_i n_i (E_i + mu_i)
    expected = [-30.0 + 35.0 + (-3.5 - 0.5), -33.5 + 35.0 + (-3.5 - 0.5) - (-13.0 + 0.0)]
    np.testing.assert_allclose(dataset.formation_energy.values, expected)
    assert list(dataset.element.values) == ["Se", "W"]
    assert dataset.exchanged_atoms.sel(defect="W_Se", element="W") == -1
    assert dataset.chemical_potential.sel(element="W") == 0.0
    for name in dataset.data_vars:
        assert dataset[name].attrs["units"] in ("eV", "1") and dataset[name].attrs["long_name"]
    assert dataset.attrs["provenance_route"] == "jax" and dataset.attrs["V_Se_steps"] == 12
    assert dataset.attrs["formula"].startswith("E_f = E(defect) - E(host)")

    path = write_dataset(dataset, tmp_path / "formation.nc")
    with xr.open_dataset(path) as back:
        xr.testing.assert_identical(back.load(), dataset)


def test_formation_bad_input():
    defect = DefectEnergy("V_Se", -30.0, {"Se": 1})
    with pytest.raises(MLHError, match="no reference energy E_i for Se"):
        formation_energies(-35.0, [defect], reference_energies={})
    with pytest.raises(MLHError, match="distinct"):
        formation_energies(-35.0, [defect, defect], reference_energies={"Se": -3.5})
    with pytest.raises(MLHError, match="not finite"):
        formation_energies(np.nan, [defect], reference_energies={"Se": -3.5})
    with pytest.raises(MLHError, match="elemental"):
        reference_energy_per_atom(wse2_host(), EMT())


def test_reference_energy_per_atom_is_size_independent():
    single = reference_energy_per_atom(bulk("Cu", "fcc", a=3.6), EMT())
    double = reference_energy_per_atom(bulk("Cu", "fcc", a=3.6).repeat(2), EMT())
    assert double == pytest.approx(single)


@pytest.mark.parametrize("optimizer", ["BFGS", "FIRE"])
def test_relax_writes_trajectory_and_dataset(tmp_path, optimizer):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    trajectory = tmp_path / "relax.traj"
    result = relax(atoms, EMT(), fmax=0.01, steps=300, optimizer=optimizer, trajectory=trajectory)
    assert result.converged and result.max_forces[-1] < 0.01
    assert result.energies[-1] < result.energies[0]
    assert np.abs(atoms.positions - result.atoms.positions).max() > 0.0  # input untouched copy
    frames = read(trajectory, ":")
    assert len(frames) == result.steps + 1
    np.testing.assert_allclose(frames[-1].positions, result.atoms.positions)
    dataset = relaxation_dataset(result, attrs={"calculator": "EMT"})
    assert dataset.sizes == {"step": result.steps + 1, "atom": 32, "xyz": 3, "cell_vector": 3}
    assert dataset.energy.attrs["units"] == "eV" and dataset.attrs["converged"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["relax.traj"]


def test_failed_relaxation_leaves_no_trajectory(tmp_path):
    atoms = bulk("Si", "diamond", a=5.43)   # EMT has no Si parameters
    with pytest.raises(NotImplementedError):
        relax(atoms, EMT(), trajectory=tmp_path / "relax.traj")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MLHError, match="unknown optimizer"):
        relax(atoms, EMT(), optimizer="LBFGS")


class StoppingEMT(EMT):
    """EMT that raises `error` at its `stop_at`-th evaluation (None: never) and counts them."""

    def __init__(self, stop_at=None, error=KeyboardInterrupt):
        super().__init__()
        self.stop_at, self.error, self.evaluations = stop_at, error, 0

    def calculate(self, *args, **kwargs):
        self.evaluations += 1
        if self.evaluations == self.stop_at:
            raise self.error("stopped")
        super().calculate(*args, **kwargs)


def rattled_copper():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=3)
    return atoms


@pytest.mark.parametrize("optimizer", ["BFGS", "FIRE"])
def test_interrupted_relaxation_resumes_where_it_stopped(tmp_path, optimizer):
    atoms = rattled_copper()
    options = dict(fmax=0.01, steps=300, optimizer=optimizer)
    whole = relax(atoms, EMT(), trajectory=tmp_path / "whole.traj", **options)
    trajectory = tmp_path / "relax.traj"
    with pytest.raises(KeyboardInterrupt):  # a kill during the 6th evaluation (step 5)
        relax(atoms, StoppingEMT(stop_at=6), trajectory=trajectory, **options)
    assert not trajectory.exists()
    assert len(read(tmp_path / ".relax.traj.partial.traj", ":")) == 5

    calculator = StoppingEMT()
    resumed = relax(atoms, calculator, trajectory=trajectory, **options)
    assert resumed.converged
    assert calculator.evaluations == resumed.steps - 3  # step 4 again, then steps 5...
    assert len(read(trajectory, ":")) == resumed.steps + 1
    np.testing.assert_allclose(resumed.energies[:6], whole.energies[:6], rtol=0, atol=1e-12)
    if optimizer == "BFGS":  # BFGS's state is restored exactly
        assert resumed.steps == whole.steps
        np.testing.assert_allclose(resumed.atoms.positions, whole.atoms.positions, atol=1e-10)
    else:  # FIRE restarts its mixing schedule: the same minimum, by another path
        np.testing.assert_allclose(resumed.energies[-1], whole.energies[-1], atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relax.traj", "whole.traj"]


def test_interrupted_relaxation_of_another_structure_is_refused(tmp_path):
    trajectory = tmp_path / "relax.traj"
    with pytest.raises(KeyboardInterrupt):
        relax(rattled_copper(), StoppingEMT(stop_at=3), trajectory=trajectory)
    other = rattled_copper()
    other.rattle(0.01, seed=9)
    with pytest.raises(MLHError, match="another start structure"):
        relax(other, EMT(), trajectory=trajectory)


def test_relaxation_failing_after_some_steps_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="stopped"):
        relax(rattled_copper(), StoppingEMT(stop_at=4, error=RuntimeError),
              trajectory=tmp_path / "relax.traj")
    assert list(tmp_path.iterdir()) == []


def test_driver_reuses_a_finished_relaxation_only_when_everything_matches(tmp_path):
    from argparse import Namespace

    from relax.drivers import relax_and_write

    args = Namespace(fmax=0.01, steps=300, optimizer="BFGS")
    attrs = {"model": "EMT", "model_sha256": "0"}
    atoms = rattled_copper()
    done = tmp_path / "done"
    first = relax_and_write(atoms, EMT(), args, done, "host", attrs)
    again = relax_and_write(atoms, StoppingEMT(stop_at=1), args, done, "host", attrs)
    np.testing.assert_array_equal(again.energies, first.energies)
    np.testing.assert_array_equal(again.atoms.positions, first.atoms.positions)
    assert again.steps == first.steps and again.converged

    other_start = rattled_copper()
    other_start.rattle(0.01, seed=9)
    changes = {"model": (atoms, args, {**attrs, "model_sha256": "1"}),
               "start": (other_start, args, attrs),
               "fmax": (atoms, Namespace(fmax=0.005, steps=300, optimizer="BFGS"), attrs)}
    for change, (start, options, provenance) in changes.items():
        shutil.copytree(done, tmp_path / change)
        calculator = StoppingEMT()
        relax_and_write(start, calculator, options, tmp_path / change, "host", provenance)
        assert calculator.evaluations > 1, change  # relaxed again


def test_driver_reuses_a_relaxation_stopped_at_its_step_limit(tmp_path):
    """An unconverged run that used all its steps is finished for the same step limit (a
    rerun would repeat it) and relaxed again, to convergence, when given more steps."""
    from argparse import Namespace

    from relax.drivers import relax_and_write

    attrs = {"model": "EMT", "model_sha256": "0"}
    capped = relax_and_write(rattled_copper(), EMT(), Namespace(fmax=0.01, steps=2,
                                                                 optimizer="BFGS"),
                             tmp_path, "host", attrs)
    assert not capped.converged and capped.steps == 2
    calculator = StoppingEMT(stop_at=1)
    again = relax_and_write(rattled_copper(), calculator,
                            Namespace(fmax=0.01, steps=2, optimizer="BFGS"), tmp_path, "host", attrs)
    np.testing.assert_array_equal(again.atoms.positions, capped.atoms.positions)
    longer = relax_and_write(rattled_copper(), EMT(),
                             Namespace(fmax=0.01, steps=300, optimizer="BFGS"), tmp_path, "host",
                             attrs)
    assert longer.converged and longer.steps > 2


@pytest.mark.parametrize("script", ["relax_structure.py", "defect_formation.py"])
def test_example_drivers_reject_missing_and_unreadable_files(tmp_path, capsys, monkeypatch,
                                                            script):
    missing = tmp_path / "absent.xyz"
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("this is not a structure\n")
    output = tmp_path / "out"
    extra = ([] if script == "relax_structure.py"
             else ["--defect", str(garbage), "--reference", "Se=-3.5"])
    for bad in (missing, garbage):
        monkeypatch.setattr(sys, "argv", [script, str(bad), *extra, "-o", str(output)])
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(str(EXAMPLES / script), run_name="__main__")
        assert exit_info.value.code == 1
        message = capsys.readouterr().err.strip()
        assert message.startswith("error:") and str(bad.name) in message
        assert len(message.splitlines()) == 1
    assert not output.exists()


def test_fit_repulsion_driver_rejects_a_missing_model(tmp_path, capsys, monkeypatch):
    output = tmp_path / "rep.json"
    monkeypatch.setattr(sys, "argv", ["fit_repulsion.py", str(tmp_path / "no_model"),
                                      str(tmp_path), "-o", str(output)])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLES / "fit_repulsion.py"), run_name="__main__")
    assert exit_info.value.code == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("error:") and "no_model" in message
    assert len(message.splitlines()) == 1 and not output.exists()
