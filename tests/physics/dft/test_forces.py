"""The dft route's forces are exactly -dA_KS/dR: GPAW's forces plus the response term of a
non-self-consistent density (physics.dft.forces), and -dA_HF/dR or the mean of both with
the Harris-Foulkes functional (physics.dft.harris_forces), checked by central finite differences
with Richardson extrapolation on a rattled WSe2 cell with the bundled direct model and the
bundled correction model (H = H0 + dH, GPAW's H0 differentiated too; also with per-atom
potential levels); its energy is
invariant and its forces rotate with the structure (hypothesis)."""


from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from mlh.errors import MLHError
from mlh.model.predictor import Predictor
from relax.calculator import MLHCalculator
from tests.models import with_random_potential
from tests.structures import WSE2_CORRECTION_MODEL, rotate_structure, wse2_primitive
from tests.structures import WSE2_MODEL as MODEL

pytestmark = [pytest.mark.gpaw, pytest.mark.usefixtures("float64")]


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load(MODEL)


@pytest.fixture(scope="module")
def dft_calculator(predictor):
    """One dft-route calculator for the tests that need no fresh one (its GPAW setup and
    compiled functions are reused)."""
    return MLHCalculator(predictor, route="dft", kpts=(2, 2, 1), skin=1.0)


@pytest.fixture(scope="module")
def rattled(dft_calculator):
    """The rattled WSe2 cell, its free energy (eV) and forces (eV/Å), from one GPAW run
    (forces asked first, so the energy comes with them)."""
    atoms = wse2_primitive(rattle=0.08, seed=5)
    forces = dft_calculator.get_forces(atoms)
    return atoms, dft_calculator.get_potential_energy(atoms, force_consistent=True), forces


@pytest.fixture(scope="module")
def correction_calculator():
    return MLHCalculator(WSE2_CORRECTION_MODEL, route="dft", kpts=(2, 2, 1), skin=1.0)


@pytest.fixture(scope="module")
def rattled_correction(correction_calculator):
    """As `rattled`, with the correction model."""
    atoms = wse2_primitive(rattle=0.08, seed=5)
    forces = correction_calculator.get_forces(atoms)
    return atoms, correction_calculator.get_potential_energy(atoms, force_consistent=True), forces


def central_difference(calculator, atoms, atom: int, axis: int, step: float) -> float:
    """-(A(x + h) - A(x - h)) / 2h of the calculator's free energy A (eV/Å) along one
    component of the positions."""
    energies = []
    for sign in (1, -1):
        moved = atoms.copy()
        moved.positions[atom, axis] += sign * step
        energies.append(calculator.get_potential_energy(moved, force_consistent=True))
    return -(energies[0] - energies[1]) / (2 * step)


def test_forces_are_minus_the_gradient_of_the_free_energy(dft_calculator, rattled):
    atoms, _, forces = rattled
    without = MLHCalculator(dft_calculator.predictor, route="dft", kpts=(2, 2, 1), skin=1.0,
                            response=False).get_forces(atoms)

    for atom, axis in [(0, 0), (1, 2), (2, 1)]:
        estimates = [central_difference(dft_calculator, atoms, atom, axis, h)
                     for h in (0.005, 0.0025)]
        richardson = (4 * estimates[1] - estimates[0]) / 3
        assert forces[atom, axis] == pytest.approx(richardson, abs=5e-4)
    # GPAW's forces of the non-self-consistent state alone are far off (> 0.05 eV/Å here)
    assert np.abs(without - forces).max() > 0.05


def test_correction_model_forces_are_minus_the_gradient(correction_calculator,
                                                        rattled_correction):
    """H = H0 + dH: GPAW's H0 is differentiated too (physics.dft.baseline_forces). Central
    differences (h = 0.0025 Å) of W and Se components within the issue's 1e-3 eV/Å; with
    Richardson extrapolation they agreed within 1.1e-4 eV/Å (all three atoms)."""
    atoms, _, forces = rattled_correction

    for atom, axis in [(0, 0), (1, 2)]:
        assert forces[atom, axis] == pytest.approx(
            central_difference(correction_calculator, atoms, atom, axis, 0.0025), abs=1e-3)


def test_first_step_model_forces_are_minus_the_gradient():
    """H = B + dH with the first-step baseline B = H0 + s (H[n0] - H0): the route
    differentiates H[n0] at H0's state and through H0's states (physics.dft.forces._FirstStep).
    The bundled WSe2 correction model stands in for a first-step model (its metadata says
    s = 0.3, n0 on the 2x2x1 grid of 0.8 k-points per 1/Å), with the mean functional (the
    Harris terms too). Measured with Richardson extrapolation: within 1.0e-4 eV/Å (Kohn-Sham:
    2.8e-4); the route refuses another k grid than n0's."""
    model = Predictor.load(WSE2_CORRECTION_MODEL)
    first_step = replace(model, metadata={**model.metadata, "baseline": {
        **model.metadata["baseline"], "first_step_share": 0.3, "kpoint_density": 0.8}})
    calculator = MLHCalculator(first_step, route="dft", kpts=(2, 2, 1), skin=1.0, functional="mean")
    atoms = wse2_primitive(rattle=0.08, seed=5)
    forces = calculator.get_forces(atoms)
    for atom, axis in [(0, 0), (1, 2)]:
        assert forces[atom, axis] == pytest.approx(
            central_difference(calculator, atoms, atom, axis, 0.0025), abs=1e-3)
    with pytest.raises(MLHError, match=r"n0 on the k grid \(2, 2, 1\) .* route's grid is \(3, 3, 1\)"):
        MLHCalculator(first_step, route="dft", kpts=(3, 3, 1)).get_forces(atoms)


def test_potential_correction_model_forces_are_minus_the_gradient():
    """A correction model with per-atom potential levels (mlh.model.atom_potential): the
    response also runs through the levels and through S in the term u S."""
    model = with_random_potential(Predictor.load(WSE2_CORRECTION_MODEL))
    calculator = MLHCalculator(model, route="dft", kpts=(2, 2, 1), skin=1.0)
    atoms = wse2_primitive(rattle=0.08, seed=5)
    forces = calculator.get_forces(atoms)

    assert forces[1, 2] == pytest.approx(central_difference(calculator, atoms, 1, 2, 0.0025),
                                         abs=1e-3)


@pytest.mark.parametrize("model, functional", [("correction", "harris"), ("direct", "mean")])
def test_harris_and_mean_forces_are_minus_the_gradient(predictor, rattled_correction, rattled,
                                                       model, functional):
    """Forces of the Harris-Foulkes free energy (physics.dft.harris_forces) and of the mean
    of both functionals are minus the gradient of that free energy (central differences,
    h = 0.0025 Å; with Richardson extrapolation they agreed within 4e-4 eV/Å), and the mean's
    forces are the mean of the Kohn-Sham and Harris-Foulkes ones. They differ from the
    Kohn-Sham forces (> 0.05 eV/Å here), so the functional reaches the forces."""
    source = WSE2_CORRECTION_MODEL if model == "correction" else predictor
    atoms, _, kohn_sham = rattled_correction if model == "correction" else rattled
    calculator = MLHCalculator(source, route="dft", kpts=(2, 2, 1), skin=1.0,
                               functional=functional)
    forces = calculator.get_forces(atoms)

    assert forces[1, 2] == pytest.approx(central_difference(calculator, atoms, 1, 2, 0.0025),
                                         abs=1e-3)
    assert np.abs(forces - kohn_sham).max() > 0.05
    if functional == "mean":
        harris = MLHCalculator(source, route="dft", kpts=(2, 2, 1), skin=1.0,
                               functional="harris").get_forces(atoms)
        np.testing.assert_allclose(forces, 0.5 * (kohn_sham + harris), atol=1e-6)


def test_atoms_crossing_the_cell_boundary(predictor):
    """The model's topology keeps an atom that left the cell unwrapped; GPAW wraps it. The
    route translates between the two Bloch gauges: same result as a fresh calculator."""
    atoms = wse2_primitive(rattle=0.05, seed=2)
    atoms.positions[0, :2] = 0.02  # W just inside the cell corner
    moving = MLHCalculator(predictor, route="dft", kpts=(2, 2, 1), skin=1.0)
    moving.get_forces(atoms)
    crossed = atoms.copy()
    crossed.positions[0, :2] = -0.03  # now outside: fractional coordinates < 0
    forces = moving.get_forces(crossed)
    assert moving._dft_route.band_route.topology_builds == 1  # topology reused, not rebuilt
    fresh = MLHCalculator(predictor, route="dft", kpts=(2, 2, 1), skin=1.0)
    np.testing.assert_allclose(forces, fresh.get_forces(crossed), atol=1e-6)
    assert moving.get_potential_energy(crossed) == pytest.approx(
        fresh.get_potential_energy(crossed), abs=1e-7)


@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_correction_model_energy_invariant_and_forces_rotate(correction_calculator,
                                                           rattled_correction, seed):
    """As below, with the correction model (GPAW's H0 turns with the cell)."""
    atoms, energy, forces = rattled_correction
    rotation = Rotation.random(random_state=seed).as_matrix()
    moved = rotate_structure(atoms, rotation)
    moved_forces = correction_calculator.get_forces(moved)
    assert correction_calculator.get_potential_energy(moved, force_consistent=True) == \
        pytest.approx(energy, abs=1e-4)
    np.testing.assert_allclose(moved_forces, forces @ rotation.T, atol=5e-4)


@settings(max_examples=2, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_energy_invariant_and_forces_rotate(dft_calculator, rattled, seed):
    """GPAW's grid turns with the cell, but its finite-difference stencils for a cell not
    aligned with the axes differ slightly: 7e-6 eV and 5e-5 eV/Å were seen, far below the
    issue's 1 meV and 5 meV/Å, far above what unrotated forces would give (~0.1 eV/Å)."""
    atoms, energy, forces = rattled
    rotation = Rotation.random(random_state=seed).as_matrix()
    moved = rotate_structure(atoms, rotation)
    moved_forces = dft_calculator.get_forces(moved)  # one GPAW run for forces and energy
    assert dft_calculator.get_potential_energy(moved, force_consistent=True) == pytest.approx(
        energy, abs=1e-4)
    np.testing.assert_allclose(moved_forces, forces @ rotation.T, atol=5e-4)


def test_correction_model_needs_its_h0_settings():
    """H0 must be made as the model's training data made it: another grid spacing (or a
    charged structure, whose H0 forces are not available) is refused at construction."""
    from relax.calculator import CalculatorInputError

    with pytest.raises(CalculatorInputError, match="learned dH on H0 made with h = 0.2 Å; "
                                                   "the route's grid spacing is 0.18 Å"):
        MLHCalculator(WSE2_CORRECTION_MODEL, route="dft", h=0.18)
    with pytest.raises(CalculatorInputError, match="need a neutral structure"):
        MLHCalculator(WSE2_CORRECTION_MODEL, route="dft", charge=1.0)
