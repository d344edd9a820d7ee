"""The model-started SCF (physics.dft.scf, the calculator's "scf" route): GPAW's own SCF from
a given H's density ends at GPAW's energy and forces, in fewer iterations than GPAW's usual
start from GPAW's converged H, and from a correction model's H0 + dH; an SCF that cannot
converge is one clear error."""

import sys

import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.gpaw.record_settings import record_atoms, settings_from_record
from physics.dft.scf import (
    START_ATOMS,
    START_CORRECTED,
    START_HAMILTONIAN,
    START_PREVIOUS,
    ModelSCFRoute,
    run_scf,
    scf_for_record,
)
from relax.calculator import MLHCalculator
from tests.structures import EXAMPLES, WSE2_MODEL

pytestmark = pytest.mark.gpaw

ENERGY_TOLERANCE = 1e-3   # eV; SCFs from different starts end within ~1e-5 eV here
FORCE_TOLERANCE = 1e-2    # eV/Å; they differ by up to 6 meV/Å on a 36-atom WSe2 cell
                          # (GPAW's density criterion, 1e-4 per electron)


def assert_same_as_gpaw(result, labels):
    assert result.energy == pytest.approx(labels.energy, abs=ENERGY_TOLERANCE)
    assert result.free_energy == pytest.approx(labels.free_energy, abs=ENERGY_TOLERANCE)
    assert np.abs(result.forces - labels.forces).max() < FORCE_TOLERANCE


def test_started_from_gpaw_hamiltonian_equals_gpaw_in_fewer_iterations(gpaw_records):
    """The ideal model (GPAW's converged H of water): 3 iterations, GPAW's minimum (its energy
    criterion compares three), against 8 from superposed atoms; same energy and forces."""
    atoms, record = gpaw_records("water")
    usual = run_scf(atoms, settings_from_record(record))
    ideal = scf_for_record(record)
    assert (usual.start, ideal.start) == (START_ATOMS, START_HAMILTONIAN)
    assert_same_as_gpaw(usual, record.labels)
    assert_same_as_gpaw(ideal, record.labels)
    assert ideal.iterations == 3 < usual.iterations


def test_scf_that_does_not_converge_is_one_error(gpaw_records):
    _, record = gpaw_records("water")
    settings = settings_from_record(record).model_copy(update={"maxiter": 2})
    with pytest.raises(MLHError, match="did not converge in 2 iterations started from the "
                                       "given Hamiltonian's density"):
        scf_for_record(record, settings)


def test_correction_model_starts_from_h0_plus_its_correction(gpaw_records, monkeypatch):
    """A correction model's start is H0 + dH (GPAW's zeroth-step H0, read from the SCF's own
    GPAW object, plus the model's dH): the H installed equals the inference's H0 + dH,
    and the SCF from it ends at GPAW's result."""
    import physics.dft.scf as scf
    from mlh.inference.prediction import predict_record
    from tests.models import direct_and_correction

    atoms, record = gpaw_records("water")
    _, correction = direct_and_correction(record)
    installed, install_density = [], scf.install_density

    def spy(dft, hamiltonian_k, overlap_k=None):
        installed.append(np.array(hamiltonian_k(None, 0)))
        return install_density(dft, hamiltonian_k, overlap_k)

    monkeypatch.setattr(scf, "install_density", spy)
    route = scf.ModelSCFRoute(correction, settings_from_record(record),
                              later_start=START_HAMILTONIAN)
    result = route.evaluate(atoms)
    assert result.start == START_HAMILTONIAN
    assert_same_as_gpaw(result, record.labels)
    expected = predict_record(correction, atoms, "water")
    dH = (expected.hamiltonian_k(None) - expected.baseline_k(None)).toarray()
    assert np.abs(dH).max() > 1e-3  # the random dH is there
    np.testing.assert_allclose(installed[0], expected.hamiltonian_k(None).toarray(), atol=1e-4)


@pytest.fixture(scope="module")
def scf_calculator():
    return MLHCalculator(WSE2_MODEL, route="scf", kpts=(3, 3, 1))


def test_scf_route_equals_gpaw_and_reuses_the_previous_state(gpaw_records, scf_calculator):
    """The bundled model's start on the WSe2 cell ends at GPAW's SCF result (in 8 iterations,
    as many as GPAW's usual start here: measured, not asserted); a moved structure starts
    from the previous converged state, as GPAW does along relaxations."""
    _, record = gpaw_records("wse2")
    atoms = record_atoms(record)
    forces = scf_calculator.get_forces(atoms)
    first = scf_calculator.last_result
    assert first.start == START_HAMILTONIAN
    assert_same_as_gpaw(first, record.labels)
    np.testing.assert_array_equal(forces, first.forces)
    assert scf_calculator.get_potential_energy(atoms) == first.energy  # cached, no new SCF

    moved = atoms.copy()
    moved.positions[0, 0] += 0.01
    scf_calculator.get_forces(moved)
    assert scf_calculator.last_result.start == START_PREVIOUS
    assert scf_calculator.last_result.iterations < first.iterations


def test_corrected_start_adds_the_model_error_of_the_previous_step(gpaw_records, scf_calculator):
    """later_start=START_CORRECTED: at an unchanged structure the corrected start is GPAW's
    converged H itself (GPAW's minimum of 3 iterations), also when an atom is given a
    lattice vector away (GPAW wraps it back and its Bloch matrices stay the same); a moved
    structure starts from the model corrected by its previous error."""
    _, record = gpaw_records("wse2")
    atoms = record_atoms(record)
    settings = settings_from_record(record).model_copy(update={"kpts": (3, 3, 1)})
    route = ModelSCFRoute(scf_calculator.predictor, settings, later_start=START_CORRECTED)
    first = route.evaluate(atoms)
    again = route.evaluate(atoms)
    assert (first.start, again.start) == (START_HAMILTONIAN, START_CORRECTED)
    assert again.iterations == 3 < first.iterations
    assert_same_as_gpaw(again, record.labels)

    shifted = atoms.copy()
    shifted.positions[0] += shifted.cell[0] - shifted.cell[1]
    same = route.evaluate(shifted)
    assert (same.start, same.iterations) == (START_CORRECTED, 3)
    moved = atoms.copy()
    moved.positions[0, 0] += 0.01
    assert route.evaluate(moved).start == START_CORRECTED

    with pytest.raises(MLHError, match="unknown later_start 'sometimes'"):
        ModelSCFRoute(scf_calculator.predictor, settings, later_start="sometimes")


def test_relax_driver_reports_an_scf_that_does_not_converge(tmp_path, capsys, monkeypatch):
    import runpy

    from ase.io import write

    from tests.structures import wse2_primitive

    structure = tmp_path / "cell.extxyz"
    write(structure, wse2_primitive(rattle=0.05))
    output = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["relax_structure.py", str(structure), "-o", str(output),
                                      "--route", "scf", "--kpts", "2x2x1", "--maxiter", "2"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(EXAMPLES / "relax_structure.py"), run_name="__main__")
    assert exit_info.value.code == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("error:") and "did not converge in 2 iterations" in message
    assert len(message.splitlines()) == 1
    assert not output.exists() or not any(output.iterdir())
