"""The DFT-functional route: GPAW's own converged H reproduces GPAW's SCF energy and forces."""

from dataclasses import replace

import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.gpaw.record_settings import record_atoms, record_scf_kpts, settings_from_record
from physics.dft.functional import dft_functional_for_record, evaluate_dft_functional
from tests.structures import STRUCTURES

pytestmark = pytest.mark.gpaw

ENERGY_TOLERANCE = 1e-3   # eV (the 1 meV)
FORCE_TOLERANCE = 5e-3    # eV/Å (the 5 meV/Å)


@pytest.fixture(scope="module")
def route(gpaw_records):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = dft_functional_for_record(gpaw_records(name)[1])
        return cache[name]

    return get


@pytest.mark.parametrize("name", ["water", "quartz", "wse2"])
def test_scf_hamiltonian_reproduces_scf_energy_and_forces(gpaw_records, route, name):
    _, record = gpaw_records(name)
    result = route(name)
    labels = record.labels
    for energy, free in [(result.energy, result.free_energy),
                         (result.harris_energy, result.harris_free_energy)]:
        assert abs(energy - labels.energy) < ENERGY_TOLERANCE
        assert abs(free - labels.free_energy) < ENERGY_TOLERANCE
    terms = result.energy_terms
    assert sum(terms[k] for k in ("band", "kinetic_correction", "coulomb", "zero", "external",
                                  "xc", "entropy", "spinorbit")) == pytest.approx(
        result.free_energy, abs=1e-9)
    assert result.forces.shape == (record.n_atoms, 3)
    if labels.forces is not None:  # quartz is made without forces
        assert np.abs(result.forces - labels.forces).max() < FORCE_TOLERANCE
    assert result.kpoint_weights.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(result.kpoints, labels.kpoints, atol=1e-12)


def test_settings_and_kpoints_from_provenance(gpaw_records):
    for name in ("water", "wse2"):
        _, record = gpaw_records(name)
        expected = STRUCTURES[name][1]
        settings = settings_from_record(record)
        for field in ("xc", "basis", "h", "setups", "smearing_width", "spinpol"):
            assert getattr(settings, field) == getattr(expected, field)
    assert record_scf_kpts(record) == (3, 3, 1)


def test_perturbed_hamiltonian_is_variational(gpaw_records, route):
    """A non-SCF density matrix raises the Kohn-Sham free energy (Mermin's principle)."""
    _, record = gpaw_records("water")
    rng = np.random.default_rng(1)
    noise = 0.01 * rng.normal(size=record.H_pair.shape)
    result = dft_functional_for_record(replace(record, H_pair=record.H_pair + noise),
                                       forces=False)
    reference = route("water")
    assert result.forces is None
    excess = result.free_energy - reference.free_energy
    assert 0 < excess < 0.1
    assert abs(result.harris_free_energy - reference.free_energy) < excess
    energy, free = result.energies("mean")
    assert free == pytest.approx(0.5 * (result.free_energy + result.harris_free_energy), abs=1e-12)
    assert energy == pytest.approx(0.5 * (result.energy + result.harris_energy), abs=1e-12)
    assert abs(free - reference.free_energy) < excess
    assert result.energies("harris") == (result.harris_energy, result.harris_free_energy)
    assert result.energies("0.25")[1] == pytest.approx(
        0.75 * result.free_energy + 0.25 * result.harris_free_energy, abs=1e-12)
    assert result.energies(0.0) == result.energies("kohn-sham")
    with pytest.raises(MLHError, match="unknown functional 'pbe'"):
        result.energies("pbe")


def test_energy_unchanged_by_c_times_s(gpaw_records, route):
    """H and H + c S have the same states: the same energy (E_F moves by c).

    Forces of a fixed record are not compared: GPAW's LCAO forces of a given H use its
    energy-weighted density matrix, which moves by c rho; only the route's forces with the
    model's dH/dR (physics.dft.forces) are -dE/dR and so unchanged.
    """
    from mlh.inference.metrics import gauge_aligned

    _, record = gpaw_records("water")
    reference = route("water")
    shifted = dft_functional_for_record(gauge_aligned(record, -0.7))  # H + 0.7 eV S
    assert shifted.free_energy == pytest.approx(reference.free_energy, abs=1e-6)
    assert shifted.energy == pytest.approx(reference.energy, abs=1e-6)
    assert shifted.fermi_level == pytest.approx(reference.fermi_level + 0.7, abs=1e-6)


def test_bad_hamiltonians(gpaw_records):
    atoms, record = gpaw_records("water")
    settings = settings_from_record(record)
    n = record.n_orbitals
    H = record.hamiltonian_k(None).toarray()
    asymmetric = H + np.triu(np.full((n, n), 0.1), 1)
    cases = [
        (lambda k, s: H * np.nan, "NaN"),
        (lambda k, s: asymmetric, "not symmetric"),
        (lambda k, s: H[:-1, :-1], "shape"),
    ]
    for hamiltonian_k, match in cases:
        with pytest.raises(MLHError, match=match):
            evaluate_dft_functional(record_atoms(record), settings, hamiltonian_k, forces=False)


def test_record_of_another_structure_is_rejected(gpaw_records):
    _, record = gpaw_records("water")
    moved = replace(record, positions=record.positions + [0.1, 0.0, 0.0] * (
        np.arange(record.n_atoms) == 0)[:, None])
    with pytest.raises(MLHError, match="differs from GPAW's"):
        dft_functional_for_record(moved, forces=False)
    with pytest.raises(MLHError, match="overlap-only"):
        dft_functional_for_record(replace(record, H_pair=None, H_onsite=None))
