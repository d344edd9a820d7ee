"""GPAW's own SCF started from a given (predicted) Hamiltonian: energies and forces exactly GPAW's.

The model-started SCF route. GPAW normally starts its SCF from superposed neutral-atom
densities. Here the states of a given H (a model's prediction, or any H) are installed
first, as in the DFT-functional route (physics.dft.functional.install_density: c and eps
of H with GPAW's S, Fermi-Dirac occupations, the density n_out of rho = sum f c c^H and
its potential v[n_out]), and GPAW's unchanged SCF loop (its LCAO eigensolver, Pulay
mixer and convergence criteria) runs from there. The converged result is GPAW's own, to
GPAW's criteria; only the number of iterations depends on the start. GPAW's energy
criterion compares the last three iterations, so no start needs fewer than 3.

Along relaxations GPAW itself reuses the previous step's state: its LCAO coefficients
are kept and the density rebuilt from them at the moved atoms (`DFT.move_atoms`).
`ModelSCFRoute(later_start=START_PREVIOUS)` does the same after its first, model-started
step; START_HAMILTONIAN starts every step from the model; START_CORRECTED starts from the
model's H plus the model's error at the previous step (H_scf - H_model there), i.e. the
previous converged H moved by the model's change of H.

Units: eV, Å (GPAW's Hartree and Bohr are converted at the GPAW boundary).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from ase.units import Ha

from mlh.errors import MLHError
from mlh.gpaw.record_settings import record_atoms
from mlh.gpaw.settings import GPAWSettings
from mlh.gpaw.states import HamiltonianFunction, kpoint_index
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from physics.dft.functional import (
    BaselineHamiltonian,
    check_baseline_grid,
    gpaw_calculation,
    install_density,
    record_inputs,
)

__all__ = ["SCFResult", "converge_scf", "run_scf", "scf_for_record",
           "ModelSCFRoute", "START_ATOMS", "START_HAMILTONIAN", "START_PREVIOUS",
           "START_CORRECTED"]

START_ATOMS = "atoms"
"""GPAW's usual start: superposed neutral-atom densities."""
START_HAMILTONIAN = "hamiltonian"
"""The density of a given H's occupied states (the model's, for the scf route)."""
START_PREVIOUS = "previous"
"""The previous step's converged state moved with the atoms (GPAW's relaxation reuse)."""
START_CORRECTED = "corrected"
"""The model's H plus the model's error at the previous step (H_scf - H_model there)."""
_STARTS = {START_ATOMS: "superposed atomic densities",
           START_HAMILTONIAN: "the given Hamiltonian's density",
           START_PREVIOUS: "the previous step's converged state",
           START_CORRECTED: "the model's Hamiltonian corrected by its error at the previous step"}
_LATER_STARTS = (START_PREVIOUS, START_CORRECTED, START_HAMILTONIAN)


@dataclass(frozen=True)
class SCFResult:
    """A converged GPAW SCF and what it took.

    Attributes:
        energy: total energy extrapolated to zero width (GPAW's "energy"), eV.
        free_energy: Mermin free energy, eV.
        forces: (n_atoms, 3) GPAW's forces (eV/Å), None if not asked.
        fermi_level: eV.
        iterations: SCF iterations GPAW needed from the start.
        start: START_ATOMS, START_HAMILTONIAN or START_PREVIOUS.
        kpoints: (n_k, 3) reduced k-points (irreducible by time reversal).
        hamiltonians: (n_spins, n_k, N, N) converged H (eV) at `kpoints`, if asked for.
        timings: seconds in "setup" (GPAW objects, or moving the atoms), "start"
            (prediction and installing the given H's density), "scf", "forces" and
            "hamiltonians" (reading the converged H, when kept).
    """

    energy: float
    free_energy: float
    forces: np.ndarray | None
    fermi_level: float
    iterations: int
    start: str
    kpoints: np.ndarray
    hamiltonians: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Wall time of the whole evaluation (s)."""
        return float(sum(self.timings.values()))

    def hamiltonian_k(self, k: np.ndarray | None, spin: int) -> np.ndarray:
        """The converged H (eV) at one of `kpoints` (None: Γ), e.g. to start another SCF."""
        if self.hamiltonians is None:
            raise MLHError("this SCF result kept no Hamiltonians (keep_hamiltonians=False)")
        k = np.zeros(3) if k is None else np.asarray(k, float)
        return self.hamiltonians[spin, kpoint_index(self.kpoints, k, "this SCF's k-points")]


def converge_scf(dft, start: str, forces: bool = True, keep_hamiltonians: bool = False,
                 timings: dict[str, float] | None = None) -> SCFResult:
    """Run GPAW's SCF loop from the current state of `dft` to GPAW's criteria; energies
    and forces of the converged state.

    Args:
        dft: GPAW's DFT object (physics.dft.functional.gpaw_calculation, its density
            perhaps replaced by `install_density`, or moved by `DFT.move_atoms`).
        start: what the state is (START_*), reported in the result and errors.
        forces: also compute forces.
        keep_hamiltonians: return the converged H per (spin, k).
        timings: seconds already spent (setup, start), copied into the result.

    Raises:
        MLHError: the SCF did not converge within GPAW's maxiter.
    """
    from gpaw import KohnShamConvergenceError

    timings = dict(timings or {})
    begin = time.perf_counter()
    iterations = 0
    try:
        for iterations, _ in enumerate(dft.iconverge(), start=1):
            pass
    except KohnShamConvergenceError:
        raise MLHError(f"GPAW's SCF did not converge in {dft.scf_loop.maxiter} iterations "
                       f"started from {_STARTS[start]}; raise maxiter (GPAW settings) or check "
                       f"the structure") from None
    dft.calculate_energy()
    timings["scf"] = time.perf_counter() - begin

    F_av = None
    if forces:
        begin = time.perf_counter()
        F_av = np.array(dft.calculate_forces(), float)  # eV/Å
        timings["forces"] = time.perf_counter() - begin

    ibzwfs = dft.ibzwfs
    hamiltonians = None
    if keep_hamiltonians:
        from mlh.gpaw.reference import bloch_matrices

        begin = time.perf_counter()
        H_skMM = bloch_matrices(dft)[0]
        hamiltonians = H_skMM.real.copy() if ibzwfs.dtype == float else H_skMM
        timings["hamiltonians"] = time.perf_counter() - begin
    return SCFResult(
        energy=float(dft.results["energy"]) * Ha,
        free_energy=float(dft.results["free_energy"]) * Ha,
        forces=F_av,
        fermi_level=float(np.asarray(ibzwfs.fermi_levels).ravel()[0]) * Ha,
        iterations=iterations,
        start=start,
        kpoints=np.asarray(ibzwfs.ibz.kpt_kc, float).copy(),
        hamiltonians=hamiltonians,
        timings=timings,
    )


def run_scf(
    atoms: Atoms,
    settings: GPAWSettings,
    hamiltonian_k: HamiltonianFunction | None = None,
    kpts: tuple[int, int, int] = (1, 1, 1),
    forces: bool = True,
    charge: float = 0.0,
    overlap_k: Callable[[np.ndarray | None], np.ndarray] | None = None,
    log: io.TextIOBase | str | None = None,
    keep_hamiltonians: bool = False,
) -> SCFResult:
    """GPAW's SCF of `atoms`, started from the given H's density (None: GPAW's usual start).

    The settings' density_convergence and maxiter apply (GPAW's energy and eigenstate
    criteria keep their defaults); the other arguments are those of
    physics.dft.functional.evaluate_dft_functional and `converge_scf`.

    Raises:
        MLHError: GPAW cannot set up the structure, a bad H (physics.dft.functional.
            install_density), or an SCF that does not converge.
    """
    begin = time.perf_counter()
    dft = gpaw_calculation(atoms, settings, tuple(int(n) for n in kpts), charge, log)
    timings = {"setup": time.perf_counter() - begin}
    start = START_ATOMS
    if hamiltonian_k is not None:
        begin = time.perf_counter()
        install_density(dft, hamiltonian_k, overlap_k)
        timings["start"] = time.perf_counter() - begin
        start = START_HAMILTONIAN
    return converge_scf(dft, start, forces, keep_hamiltonians, timings)


def scf_for_record(
    record: HamiltonianRecord,
    settings: GPAWSettings | None = None,
    kpts: tuple[int, int, int] | None = None,
    forces: bool = True,
    charge: float = 0.0,
    log: io.TextIOBase | str | None = None,
) -> SCFResult:
    """`run_scf` of a record's structure started from its H(R) (GPAW-made or predicted).

    Args:
        record: a record with H; its S must be GPAW's S for its structure and settings.
        settings: default `settings_from_record(record)`.
        kpts: default the record's SCF grid (`record_scf_kpts`).
    """
    settings, kpts, hamiltonian_k, overlap_k = record_inputs(record, settings, kpts)
    return run_scf(record_atoms(record), settings, hamiltonian_k, kpts=kpts, forces=forces,
                   charge=charge, overlap_k=overlap_k, log=log)


def _same_system(old: Atoms, atoms: Atoms) -> bool:
    """Whether `old` and `atoms` have the same species, cell and periodicity (so GPAW's
    state of `old` can move to `atoms`)."""
    return (len(old) == len(atoms) and np.array_equal(old.numbers, atoms.numbers)
            and np.array_equal(old.pbc, atoms.pbc)
            and np.allclose(old.cell.array, atoms.cell.array, rtol=0, atol=1e-12))


def _check_distances(atoms: Atoms, source: str) -> None:
    """MLHError if two atoms are closer than mlh's minimum distance (as for a prediction)."""
    from mlh.model.graph import MIN_DISTANCE, check_min_distance, neighbour_pairs

    i, j, _, vector = neighbour_pairs(atoms.positions, atoms.cell.array, atoms.pbc, MIN_DISTANCE)
    check_min_distance(vector, i, j, source)


@dataclass(frozen=True)
class _ModelError:
    """H_scf - H_model (eV; spin, k, M, M) of one converged step, with the structure (its
    species, cell and periodicity) and the k-points it belongs to. GPAW's Bloch matrices
    do not change when an atom is wrapped into the cell from a lattice vector away (a test
    measures it), so the error carries over as it is."""

    atoms: Atoms
    kpoints: np.ndarray
    H_skMM: np.ndarray

    def applies_to(self, atoms: Atoms, kpoints: np.ndarray) -> bool:
        return (_same_system(self.atoms, atoms)
                and np.array_equal(self.kpoints, kpoints))


class ModelSCFRoute:
    """GPAW's SCF started from a predictor's H: GPAW's own energies and forces.

    Args:
        predictor: the model; its H comes from physics.band.route.BandEnergyRoute.
            predicted_record (float64, exact S). A correction model's start is H0 + dH,
            H0 read from the SCF's own GPAW object at its initial density (no derivative
            needed: the prediction only starts the SCF).
        settings: GPAW settings of the calculation (xc, basis and setups of the model's
            training data; h, k grid, width, density criterion, maxiter; a correction
            model also needs its H0's grid spacing h).
        charge: net charge (e).
        later_start: how each step after the first starts when the structure stays the
            same system (species, cell, periodicity): START_PREVIOUS, the previous
            converged state moved with the atoms (GPAW's own relaxation reuse);
            START_CORRECTED, the model's H plus its error at the previous step; or
            START_HAMILTONIAN, the model alone.
        skin: extra reach of the model's neighbour lists (Å).
        log: GPAW text log.

    Raises:
        MLHError: a correction model with other H0 settings than its training data's, or
            an unknown later_start.
    """

    def __init__(self, predictor: Predictor, settings: GPAWSettings, charge: float = 0.0,
                 later_start: str = START_PREVIOUS, skin: float = 0.5,
                 log: io.TextIOBase | str | None = None):
        from physics.band.route import BandEnergyRoute

        if later_start not in _LATER_STARTS:
            raise MLHError(f"unknown later_start {later_start!r}; choose one of "
                           f"{', '.join(_LATER_STARTS)}")
        self.predictor = predictor
        self.correction = predictor.config.target == "correction"
        if self.correction and check_baseline_grid(predictor, settings).first_step_share:
            raise MLHError("the model corrects a first-step baseline (GPAW's first SCF step from "
                           "H0); the scf route starts from H0 + dH only: use the dft route")
        self.predicted_record: Callable[[Atoms, str], HamiltonianRecord] = BandEnergyRoute(
            predictor, repulsion=None, width=settings.smearing_width, kpts=settings.kpts,
            kpoint_density=settings.kpoint_density, skin=skin, charge=charge,
            baseline_added=True).predicted_record
        """The model's record of a structure (atoms, name for messages); a correction
        model's holds dH alone."""
        self.settings = settings
        self.charge = float(charge)
        self.later_start = later_start
        self.log = log
        self._dft = None
        self._model_error: _ModelError | None = None

    def evaluate(self, atoms: Atoms, forces: bool = True, source: str = "structure") -> SCFResult:
        """Energy and forces (eV, eV/Å) of `atoms` from GPAW's converged SCF.

        Raises:
            MLHError: species the model lacks, atoms too close, a GPAW setup problem, or
                an SCF that does not converge within the settings' maxiter.
        """
        # a failed SCF leaves no state to reuse
        previous, self._dft = self._dft, None
        model_error, self._model_error = self._model_error, None
        atoms = atoms.copy()
        begin = time.perf_counter()
        if previous is not None and _same_system(previous.atoms, atoms):
            _check_distances(atoms, source)
            dft = previous.move_atoms(atoms)
            result = converge_scf(dft, START_PREVIOUS, forces=forces,
                                  timings={"setup": time.perf_counter() - begin})
        else:
            result, dft, H_model = self._from_model(atoms, source, model_error, forces)
            if self.later_start == START_CORRECTED:
                self._model_error = _ModelError(atoms, result.kpoints,
                                                result.hamiltonians - H_model)
        if self.later_start == START_PREVIOUS:
            self._dft = dft
        return result

    def model_hamiltonians(self, record: HamiltonianRecord, kpts: tuple[int, int, int], dft,
                           baseline: BaselineHamiltonian | None = None) -> np.ndarray:
        """The model's H (eV; spin, k, M, M) at the k-points of GPAW's `dft` (grid `kpts`),
        from its predicted record (`predicted_record`, wrapped as GPAW wraps the atoms); a
        correction model's adds GPAW's H0 (`baseline`, read from `dft` when not given)."""
        hamiltonian_k = record_inputs(record, self.settings, kpts)[2]
        H = np.array([[hamiltonian_k(k, spin) for k in np.asarray(dft.ibzwfs.ibz.kpt_kc, float)]
                      for spin in range(2 if self.settings.spinpol else 1)])
        if self.correction:
            H = H + (baseline or BaselineHamiltonian(dft)).H0_skMM
        return H

    def _from_model(self, atoms: Atoms, source: str, model_error: _ModelError | None,
                    forces: bool) -> tuple[SCFResult, object, np.ndarray]:
        """GPAW's SCF from the model's H (plus `model_error` where it applies); the result
        (with its converged H when START_CORRECTED), the DFT object and the model's H
        (spin, k, M, M; eV) at GPAW's k-points."""
        from physics.dft.forces import wrapped_record

        begin = time.perf_counter()
        record = wrapped_record(self.predicted_record(atoms, source))
        predicted = time.perf_counter()
        kpts = self.settings.scf_kpts(atoms.cell.array, atoms.pbc)
        dft = gpaw_calculation(atoms, self.settings, kpts, self.charge, self.log)
        set_up = time.perf_counter()
        kpoints = np.asarray(dft.ibzwfs.ibz.kpt_kc, float)
        H_model = self.model_hamiltonians(record, kpts, dft)
        start, H_start = START_HAMILTONIAN, H_model
        if model_error is not None and model_error.applies_to(atoms, kpoints):
            start, H_start = START_CORRECTED, H_model + model_error.H_skMM
        install_density(dft, lambda k, spin: H_start[spin, kpoint_index(kpoints, k)],
                        record_inputs(record, self.settings, kpts)[3])
        timings = {"setup": set_up - predicted,
                   "start": predicted - begin + time.perf_counter() - set_up}
        keep = self.later_start == START_CORRECTED
        return converge_scf(dft, start, forces, keep, timings), dft, H_model
