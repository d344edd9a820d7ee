"""physics.band.route and physics.band.model_hamiltonian: the band-energy route, bundled WSe2 model.

The model's JAX H equals mlh.inference.prediction.predict_record's; forces equal -dE/dR by finite
differences (Richardson-extrapolated central differences, steps 0.0025 and 0.00125 Å);
the energy is invariant and the forces rotate under rotations and translations.
"""


import numpy as np
import pytest
from ase import Atoms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from mlh.errors import MLHError
from mlh.inference.prediction import predict_record
from mlh.model.predictor import Predictor
from physics.band.repulsion import Repulsion
from physics.band.route import BandEnergyRoute
from tests.models import with_random_potential
from tests.structures import WSE2_MODEL as MODEL
from tests.structures import rotate_structure, wse2_primitive

STEPS = (0.0025, 0.00125)  # Å
FORCE_TOLERANCE = 1e-5     # eV/Å, Richardson-extrapolated FD vs analytic


pytestmark = pytest.mark.usefixtures("float64")


@pytest.fixture(scope="module")
def predictor():
    return Predictor.load(MODEL)


def structure() -> Atoms:
    """A WSe2 primitive cell rattled by 0.1 Å (far from symmetry: the model's layer norms of
    near-zero equivariant features make E vary sharply on a 0.005 Å scale near it)."""
    return wse2_primitive(rattle=0.1, seed=11)


def repulsion() -> Repulsion:
    rng = np.random.default_rng(0)
    return Repulsion(numbers=(34, 74), cutoff=4.0, powers=(3, 4, 5),
                     pair_coefficients=rng.uniform(0.5, 2.0, size=(3, 3)),
                     atom_energies=np.array([1.0, 2.0]))


@pytest.fixture(scope="module")
def route(predictor):
    return BandEnergyRoute(predictor, repulsion=repulsion(), kpts=(2, 2, 1))


def test_model_hamiltonian_equals_predict_record(predictor, route):
    atoms = structure()
    predicted = predict_record(predictor, atoms)
    mine = route.predicted_record(atoms)
    H_pair, H_onsite = mine.H_pair[0], mine.H_onsite[0]
    scale = np.abs(predicted.H_onsite).max()
    np.testing.assert_allclose(H_onsite, predicted.H_onsite[0], rtol=0, atol=2e-6 * scale)
    np.testing.assert_allclose(mine.positions, predicted.positions, atol=1e-12)
    key = {(int(i), int(j), *map(int, s)): p
           for p, (i, j, s) in enumerate(zip(mine.pair_i, mine.pair_j, mine.pair_shift))}
    found = [key[(int(i), int(j), *map(int, s))]
             for i, j, s in zip(predicted.pair_i, predicted.pair_j, predicted.pair_shift)]
    offsets = mine.pair_value_offsets
    matched = np.concatenate([H_pair[offsets[p]:offsets[p + 1]] for p in found])
    np.testing.assert_allclose(matched, predicted.H_pair[0], rtol=0, atol=2e-6 * scale)
    others = np.setdiff1d(np.arange(mine.n_pairs), found)   # negligible pairs predict_record drops
    rest = np.concatenate([H_pair[offsets[p]:offsets[p + 1]] for p in others])
    assert np.abs(rest).max(initial=0.0) < 1e-9


def test_forces_equal_finite_differences(route):
    atoms = structure()
    result = route.evaluate(atoms)
    assert result.forces.shape == (3, 3)
    assert result.repulsion_energy != 0 and result.entropy_energy <= 0
    assert result.energy == pytest.approx(result.free_energy - 0.5 * result.entropy_energy)

    def energy(atom, axis, step):
        moved = atoms.copy()
        moved.positions[atom, axis] += step
        return route.evaluate(moved, forces=False).free_energy

    for atom in range(3):
        for axis in range(3):
            central = [-(energy(atom, axis, h) - energy(atom, axis, -h)) / (2 * h) for h in STEPS]
            richardson = (4 * central[1] - central[0]) / 3
            assert result.forces[atom, axis] == pytest.approx(richardson, abs=FORCE_TOLERANCE)
    assert route.topology_builds == 1  # every displaced structure reused the topology


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1),
       translation=st.tuples(*[st.floats(-3.0, 3.0)] * 3))
def test_energy_invariant_and_forces_rotate(route, seed, translation):
    atoms = structure()
    reference = route.evaluate(atoms)
    rotation = Rotation.random(random_state=seed).as_matrix()
    moved = rotate_structure(atoms, rotation)
    moved.positions += translation
    result = route.evaluate(moved)
    assert result.free_energy == pytest.approx(reference.free_energy, abs=1e-8)
    np.testing.assert_allclose(result.forces, reference.forces @ rotation.T, atol=1e-7)


def test_bad_input(predictor, route):
    atoms = structure()
    with pytest.raises(MLHError, match="species Mo not known to the model"):
        route.evaluate(Atoms("Mo2", positions=[[0, 0, 0], [2.5, 0, 0]], cell=np.eye(3) * 8))
    close = atoms.copy()
    close.positions[1] = close.positions[0] + [0.3, 0.0, 0.0]
    with pytest.raises(MLHError, match="less than 0.5 Å"):
        route.evaluate(close)
    with pytest.raises(MLHError, match="a cell is required"):
        route.evaluate(Atoms("WSe2", positions=[[0, 0, 0], [2.5, 0, 0], [-2.5, 0, 0]]))
    with pytest.raises(MLHError, match="width must be positive"):
        BandEnergyRoute(predictor, width=0.0)


@pytest.mark.gpaw
@pytest.mark.slow
def test_fit_repulsion_to_a_gpaw_record(predictor, gpaw_records):
    """E_rep fitted to one GPAW record reproduces its energy and lowers its force error."""
    from mlh.gpaw.record_settings import record_atoms
    from physics.band.repulsion_fit import fit_repulsion_to_records

    _, record = gpaw_records("wse2")
    repulsion, report = fit_repulsion_to_records(predictor, [record], cutoff=4.0,
                                                 powers=(3, 4), names=["wse2"])
    assert report.n_structures == 1 and report.n_force_components == 9
    assert report.energy_rmse_after < 1e-3 < report.energy_rmse_before
    assert report.force_rmse_after < report.force_rmse_before
    assert repulsion.metadata["records"] == ["wse2"]
    route = BandEnergyRoute(predictor, repulsion=repulsion, kpts=(3, 3, 1))
    result = route.evaluate(record_atoms(record))
    assert result.free_energy == pytest.approx(record.labels.free_energy, abs=0.05)


def test_potential_model_hamiltonian_and_forces(predictor):
    """A model with per-atom potential levels (mlh.model.atom_potential): the route's H equals
    predict_record's (JAX S against GPAW's two-centre S) and its forces, through the levels
    and through S, equal -dE/dR by finite differences."""
    potential_model = with_random_potential(predictor)
    route = BandEnergyRoute(potential_model, repulsion=repulsion(), kpts=(2, 2, 1))
    atoms = structure()
    plain = BandEnergyRoute(predictor, kpts=(2, 2, 1)).predicted_record(atoms)
    mine = route.predicted_record(atoms)
    predicted = predict_record(potential_model, atoms)
    assert np.abs(mine.H_onsite - plain.H_onsite).max() > 0.01  # the term is not negligible
    scale = np.abs(predicted.H_onsite).max()
    np.testing.assert_allclose(mine.H_onsite[0], predicted.H_onsite[0], rtol=0, atol=2e-6 * scale)
    result = route.evaluate(atoms)

    def energy(atom, axis, step):
        moved = atoms.copy()
        moved.positions[atom, axis] += step
        return route.evaluate(moved, forces=False).free_energy

    for atom, axis in [(0, 0), (1, 2), (2, 1)]:
        central = [-(energy(atom, axis, h) - energy(atom, axis, -h)) / (2 * h) for h in STEPS]
        richardson = (4 * central[1] - central[0]) / 3
        assert result.forces[atom, axis] == pytest.approx(richardson, abs=FORCE_TOLERANCE)
