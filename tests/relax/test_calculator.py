"""relax.calculator.MLHCalculator with the bundled WSe2 model: the band route (with the fitted
repulsion) under ASE's optimizers, caching, molecules and bad input; the dft route against
GPAW's SCF (slow)."""

import jax
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import InputError
from ase.optimize import BFGS, FIRE

from mlh.errors import MLHError
from mlh.gpaw.settings import GPAWSettings
from mlh.model.predictor import Predictor
from relax.calculator import MLHCalculator
from tests.structures import WSE2_MODEL as MODEL
from tests.structures import wse2_primitive

REPULSION = MODEL / "repulsion.json"


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load(MODEL)


@pytest.fixture(scope="module")
def calculator(predictor):
    """One band-route calculator (its compiled functions are reused by the tests)."""
    return MLHCalculator(predictor, route="band", repulsion=REPULSION, kpts=(2, 2, 1), skin=1.0)


def cell() -> Atoms:
    """WSe2 primitive cell, rattled (no k-point or symmetry special case)."""
    return wse2_primitive(rattle=0.08, seed=5)


def molecule() -> Atoms:
    """A bent Se-W-Se molecule in a non-periodic 12 Å box (Γ only, real matrices)."""
    atoms = Atoms("WSe2", positions=[[0, 0, 0], [1.9, 0.3, 1.6], [-1.8, 0.2, 1.7]],
                  cell=np.eye(3) * 12.0, pbc=False)
    atoms.center()
    return atoms


@pytest.mark.parametrize("optimizer", [BFGS, FIRE])
def test_optimizers_lower_the_energy(calculator, optimizer):
    atoms = cell()
    atoms.calc = calculator
    energies, builds = [], []

    def observe():
        energies.append(atoms.get_potential_energy(force_consistent=True))
        builds.append(calculator._band_route.topology_builds)

    dynamics = optimizer(atoms, logfile=None, maxstep=0.05)
    dynamics.attach(observe)
    dynamics.run(fmax=0.02, steps=5)
    assert len(energies) == 6 and all(np.isfinite(energies))
    assert energies[-1] < energies[0] - 1e-2
    # one topology (skin 1 Å), so compiled once; the step time is benchmarks/calculator_steps.py's
    assert len(set(builds)) == 1


def test_caching_and_properties(calculator):
    atoms = cell()
    atoms.calc = calculator
    energy = atoms.get_potential_energy()
    done = calculator.n_calculations
    forces = atoms.get_forces()
    free = atoms.get_potential_energy(force_consistent=True)
    assert calculator.n_calculations == done  # one calculation gave all three properties
    result = calculator.last_result
    assert free == pytest.approx(result.free_energy)
    assert energy == pytest.approx(free - 0.5 * result.entropy_energy)
    assert forces.shape == (3, 3)
    builds = calculator._band_route.topology_builds
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert calculator.n_calculations == done + 1
    assert calculator._band_route.topology_builds == builds  # within the skin: reused


def test_molecule_in_a_box(calculator):
    atoms = molecule()
    atoms.calc = calculator
    forces = atoms.get_forces()
    assert np.isfinite(atoms.get_potential_energy())
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-8)  # translation invariance


def test_bad_input(predictor, calculator):
    with pytest.raises(MLHError, match="species Mo not known to the model"):
        calculator.get_potential_energy(Atoms("Mo", cell=np.eye(3) * 10))
    close = cell()
    close.positions[1] = close.positions[0] + [0.2, 0.3, 0.0]
    with pytest.raises(InputError, match="less than 0.5 Å"):
        calculator.get_forces(close)
    nan = predictor.with_params(jax.tree_util.tree_map(lambda x: np.full_like(x, np.nan),
                                                       predictor.params))
    with pytest.raises(MLHError, match="NaN or infinite Hamiltonian"):
        MLHCalculator(nan, route="band", repulsion=REPULSION, kpts=(2, 2, 1),
                      skin=1.0).get_potential_energy(cell())
    with pytest.raises(MLHError, match="needs a repulsion"):
        MLHCalculator(predictor, route="band")
    with pytest.raises(MLHError, match="no repulsion file"):
        MLHCalculator(predictor, route="band", repulsion=MODEL / "absent.json")
    with pytest.raises(MLHError, match="unknown route"):
        MLHCalculator(predictor, route="tight-binding")
    with pytest.raises(MLHError, match="h: Input should be less than or equal to 0.5"):
        MLHCalculator(predictor, route="dft", h=5.0)
    for functional in ("pbe", 1.5, "nan"):
        with pytest.raises(MLHError, match="unknown functional .* or a Harris-Foulkes share "
                                           "between 0 and 1"):
            MLHCalculator(predictor, route="dft", functional=functional)
    with pytest.raises(MLHError, match="a cell is required"):
        calculator.get_potential_energy(Atoms("WSe2", positions=molecule().positions))


@pytest.mark.gpaw
@pytest.mark.slow
def test_dft_route_is_variational_and_close_to_scf(predictor, gpaw_records):
    """GPAW's Kohn-Sham functional at the model's density lies above the SCF free energy."""
    atoms, record = gpaw_records("wse2")
    atoms = atoms.copy()
    calculator = MLHCalculator(predictor, route="dft", kpts=(3, 3, 1))
    atoms.calc = calculator
    forces = atoms.get_forces()
    free = atoms.get_potential_energy(force_consistent=True)
    assert calculator.n_calculations == 1
    excess = free - record.labels.free_energy
    assert 0 < excess < 0.5
    assert np.abs(forces - record.labels.forces).max() < 1.1  # 1.007 eV/Å: the model's error
    harris = MLHCalculator(predictor, route="dft", kpts=(3, 3, 1), functional="harris")
    assert harris.get_potential_energy(atoms) == pytest.approx(
        calculator.last_result.harris_energy, abs=1e-6)
    mean = MLHCalculator(predictor, route="dft", kpts=(3, 3, 1), functional="mean")
    assert mean.get_potential_energy(atoms) == pytest.approx(
        0.5 * (calculator.last_result.energy + calculator.last_result.harris_energy), abs=1e-6)


def test_from_gpaw_settings_takes_their_grid_k_points_and_width(predictor):
    settings = GPAWSettings(h=0.18, kpts=(3, 3, 1), kpoint_density=1.5, smearing_width=0.05)
    calculator = MLHCalculator.from_gpaw_settings(predictor, settings, route="dft")
    assert (calculator.h, calculator.kpts, calculator.kpoint_density, calculator.width) == (
        0.18, (3, 3, 1), 1.5, 0.05)


def test_fitted_functional_reads_the_model_folder(tmp_path, predictor):
    """functional="fitted" takes the Harris-Foulkes share stored beside the model
    (benchmarks/harris_share.py --write-model); without it, one message."""
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(MODEL, folder)
    with pytest.raises(MLHError, match="harris_share.json: no fitted Harris-Foulkes share"):
        MLHCalculator(folder, route="dft", functional="fitted")
    (folder / "harris_share.json").write_text(json.dumps({"share": 0.3}))
    with pytest.raises(MLHError, match="harris_share.json: not a fitted share file"):
        MLHCalculator(folder, route="dft", functional="fitted")
    (folder / "harris_share.json").write_text(json.dumps({"harris_share": 0.3}))
    calculator = MLHCalculator(folder, route="dft", functional="fitted")
    assert calculator.functional == 0.3
    assert calculator._dft_route.harris_share == 0.3
    with pytest.raises(MLHError, match="functional 'fitted' reads the model folder"):
        MLHCalculator(predictor, route="dft", functional="fitted")
