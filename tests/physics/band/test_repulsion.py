"""physics.band.repulsion: the pair potential, its forces, its least-squares fit and its file."""

import dataclasses

import numpy as np
import pytest
from ase import Atoms

from mlh.errors import MLHError
from physics.band.repulsion import (
    Repulsion,
    fit_repulsion,
    read_repulsion,
    repulsion_energy_and_forces,
    write_repulsion,
)

SE, W = 34, 74


pytestmark = pytest.mark.usefixtures("float64")


def known_repulsion() -> Repulsion:
    rng = np.random.default_rng(0)
    return Repulsion(numbers=(SE, W), cutoff=4.5, powers=(3, 4, 5, 6),
                     pair_coefficients=rng.normal(scale=2.0, size=(3, 4)),
                     atom_energies=np.array([-3.7, -8.2]))


def random_structure(seed: int, periodic: bool = True) -> Atoms:
    """6-10 W/Se atoms at random positions at least 1.8 Å apart, in a periodic 2D cell
    (or a molecule in a box)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 11))
    cell = np.diag([7.0, 6.5, 12.0])
    positions = []
    while len(positions) < n:
        trial = rng.uniform([0, 0, 4.5], [7.0, 6.5, 7.5])
        probe = Atoms("X" * (len(positions) + 1), positions=positions + [trial], cell=cell,
                      pbc=(periodic, periodic, False))
        if len(positions) == 0 or probe.get_distances(len(positions), range(len(positions)),
                                                      mic=True).min() > 1.8:
            positions.append(trial)
    numbers = rng.choice([SE, W], size=n)
    return Atoms(numbers=numbers, positions=positions, cell=cell, pbc=(periodic, periodic, False))


def test_forces_are_minus_the_energy_gradient():
    repulsion = known_repulsion()
    atoms = random_structure(1)
    _, forces = repulsion_energy_and_forces(repulsion, atoms)
    step = 1e-4
    for atom, axis in [(0, 0), (2, 1), (4, 2)]:
        energy = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions[atom, axis] += sign * step
            energy.append(repulsion_energy_and_forces(repulsion, moved)[0])
        assert forces[atom, axis] == pytest.approx(-(energy[0] - energy[1]) / (2 * step),
                                                   abs=1e-7)


def test_pair_potential_is_smooth_at_the_cutoff_and_counts_images_once():
    repulsion = known_repulsion()
    rc = repulsion.cutoff
    assert repulsion.pair_potential(np.array([rc, rc + 1.0]), W, SE) == pytest.approx([0, 0])
    slope = repulsion.pair_potential(rc - 1e-6, W, SE) - repulsion.pair_potential(rc - 2e-6, W, SE)
    assert abs(slope) < 1e-12
    # Two atoms 3 Å apart in a non-periodic box: one pair term plus two one-body terms.
    dimer = Atoms(numbers=[W, SE], positions=[[5, 5, 5], [8, 5, 5]], cell=np.eye(3) * 20)
    energy, forces = repulsion_energy_and_forces(repulsion, dimer)
    assert energy == pytest.approx(repulsion.pair_potential(3.0, W, SE) - 3.7 - 8.2, abs=1e-12)
    assert forces.sum(axis=0) == pytest.approx(np.zeros(3), abs=1e-12)
    # A chain of one atom per 3 Å periodic cell: each atom has two neighbours at 3 Å, and
    # one pair per cell (each unordered pair counted once).
    chain = Atoms(numbers=[SE], positions=[[0, 5, 5]], cell=[3.0, 20, 20], pbc=(True, False, False))
    energy, _ = repulsion_energy_and_forces(repulsion, chain)
    assert energy == pytest.approx(repulsion.pair_potential(3.0, SE, SE) - 3.7, abs=1e-12)


def test_fit_recovers_a_known_potential_exactly():
    truth = known_repulsion()
    structures = [random_structure(seed, periodic=seed % 3 != 0) for seed in range(10, 18)]
    results = [repulsion_energy_and_forces(truth, atoms) for atoms in structures]
    energies = np.array([e for e, _ in results])
    forces = [f if k % 2 == 0 else None for k, (_, f) in enumerate(results)]  # some energy-only
    fitted, report = fit_repulsion(structures, energies, forces, cutoff=truth.cutoff,
                                   powers=truth.powers, ridge=0.0)
    np.testing.assert_allclose(fitted.pair_coefficients, truth.pair_coefficients, atol=1e-7)
    np.testing.assert_allclose(fitted.atom_energies, truth.atom_energies, atol=1e-7)
    assert report.energy_rmse_after < 1e-9 < report.energy_rmse_before
    assert report.force_rmse_after < 1e-9 < report.force_rmse_before
    assert report.n_force_components == sum(3 * len(a) for a, f in zip(structures, forces)
                                            if f is not None)


def test_file_round_trip_and_bad_files(tmp_path):
    repulsion = dataclasses.replace(known_repulsion(), metadata={"source": "test"})
    path = tmp_path / "repulsion.json"
    write_repulsion(repulsion, path)
    back = read_repulsion(path)
    assert back.numbers == repulsion.numbers and back.powers == repulsion.powers
    assert back.cutoff == repulsion.cutoff and back.metadata == {"source": "test"}
    np.testing.assert_array_equal(back.pair_coefficients, repulsion.pair_coefficients)
    np.testing.assert_array_equal(back.atom_energies, repulsion.atom_energies)
    assert [p.name for p in tmp_path.iterdir()] == ["repulsion.json"]  # no temporary left

    with pytest.raises(MLHError, match="missing or corrupt"):
        read_repulsion(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"format_version": "1", "numbers": [34]')
    with pytest.raises(MLHError, match="bad.json: missing or corrupt"):
        read_repulsion(tmp_path / "bad.json")
    text = path.read_text().replace('"cutoff": 4.5', '"cutoff": -1')
    (tmp_path / "negative.json").write_text(text)
    with pytest.raises(MLHError, match="negative.json: the repulsion cutoff must be positive"):
        read_repulsion(tmp_path / "negative.json")


def test_bad_input():
    repulsion = known_repulsion()
    with pytest.raises(MLHError, match="no parameters for Mo"):
        repulsion_energy_and_forces(repulsion, Atoms("Mo", cell=np.eye(3) * 10))
    with pytest.raises(MLHError, match="powers must be integers >= 2"):
        Repulsion((SE,), 4.0, (1, 3), np.zeros((1, 2)), np.zeros(1))
    with pytest.raises(MLHError, match="shape"):
        Repulsion((SE, W), 4.0, (3,), np.zeros((2, 1)), np.zeros(2))
    atoms = random_structure(2)
    with pytest.raises(MLHError, match="forces of shape"):
        fit_repulsion([atoms], np.zeros(1), [np.zeros((2, 3))])
    with pytest.raises(MLHError, match="not finite"):
        fit_repulsion([atoms], np.array([np.nan]), [None])
