"""Fixed-cell structure relaxation with an ASE calculator, and its result as a Dataset.

`relax` runs ASE's BFGS or FIRE until the largest force is below `fmax` (seed 003 uses
20 meV/Å), keeps every step in hidden files so that a killed run resumes where it stopped,
writes the trajectory when it finishes (a failed run leaves nothing half-written) and
returns the energies of every step.
`relaxation_dataset` labels the result (units, long names, provenance) for NetCDF.
Units: eV, Å.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr
from ase import Atoms

from mlh import __version__ as mlh_version
from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.record.io import labelled_variable as _variable

__all__ = ["RelaxationResult", "relax", "relaxation_dataset", "relaxation_from_dataset",
           "same_structure", "DEFAULT_FMAX"]

DEFAULT_FMAX = 0.02
"""Convergence criterion on the largest atomic force (eV/Å), as in seed 003."""


@dataclass(frozen=True)
class RelaxationResult:
    """Outcome of one relaxation.

    Attributes:
        atoms: the relaxed structure (a copy, without calculator).
        energies: (n_steps + 1,) energy at every visited structure (eV; calculator "energy").
        free_energies: (n_steps + 1,) free energy at every visited structure (eV).
        max_forces: (n_steps + 1,) largest |F_a| at every visited structure (eV/Å).
        forces: (n_atoms, 3) forces of the relaxed structure (eV/Å).
        converged: max force below fmax.
        fmax: the criterion (eV/Å).
        optimizer: "BFGS" or "FIRE".
        seconds: wall time (s).
    """

    atoms: Atoms
    energies: np.ndarray
    free_energies: np.ndarray
    max_forces: np.ndarray
    forces: np.ndarray
    converged: bool
    fmax: float
    optimizer: str
    seconds: float

    @property
    def steps(self) -> int:
        return len(self.energies) - 1


@dataclass(frozen=True)
class _ResumeFiles:
    """Hidden files beside the trajectory of an unfinished relaxation.

    Attributes:
        frames: ASE trajectory of the steps done so far (with energies and forces).
        state: JSON with the optimizer's name, the wall time spent and the optimizer's
            restart data as of the last step.
        restart: the ASE optimizer's own restart file (rewritten, not atomically, every step).
    """

    frames: Path
    state: Path
    restart: Path

    @classmethod
    def beside(cls, trajectory: Path) -> _ResumeFiles:
        def hidden(tag: str) -> Path:
            return trajectory.with_name(f".{trajectory.name}.{tag}")
        return cls(hidden("partial.traj"), hidden("state.json"), hidden("optimizer.json"))

    def remove(self) -> None:
        for path in (self.frames, self.state, self.restart):
            path.unlink(missing_ok=True)


def same_structure(a: Atoms, b: Atoms) -> bool:
    """True if a and b have the same species, cell and positions (to 1e-8 Å): the same start
    structure of a relaxation."""
    return (np.array_equal(a.numbers, b.numbers)
            and np.allclose(a.cell.array, b.cell.array, atol=1e-8)
            and np.allclose(a.positions, b.positions, atol=1e-8))


def _max_force(forces: np.ndarray) -> float:
    """Largest atomic force |F_a| (eV/Å)."""
    return float(np.linalg.norm(forces, axis=1).max(initial=0.0))


def _interrupted_steps(files: _ResumeFiles, atoms: Atoms,
                       optimizer: str) -> tuple[list[Atoms], dict]:
    """Frames and state of an interrupted run of this relaxation ([] and {} if none).

    Raises:
        MLHError: unreadable files, or files of a run with another start structure, cell
            or optimizer.
    """
    from ase.io import read

    if not files.frames.exists():
        files.remove()
        return [], {}
    try:
        frames = read(files.frames, ":")
        state = json.loads(files.state.read_text()) if files.state.exists() else {}
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same message
        raise MLHError(f"{files.frames}: the interrupted relaxation's files cannot be read "
                       f"({error}); delete them to start again") from None
    if state.get("optimizer", optimizer) != optimizer or not same_structure(frames[0], atoms):
        raise MLHError(f"{files.frames}: an interrupted relaxation of another start structure "
                       f"or optimizer; delete it (and its .state.json) to start this one")
    return frames, state


def relax(
    atoms: Atoms,
    calculator,
    fmax: float = DEFAULT_FMAX,
    steps: int = 200,
    optimizer: Literal["BFGS", "FIRE"] = "BFGS",
    trajectory: str | os.PathLike | None = None,
    logfile: str | None = None,
) -> RelaxationResult:
    """Relax positions at fixed cell (the input `atoms` are not modified).

    With a `trajectory` the run resumes after a kill: until it finishes, every step goes
    to a hidden partial trajectory beside it, and the optimizer's state to a hidden JSON
    file. A rerun with the same start structure and optimizer continues from the last
    finished step with the optimizer's state of that step (BFGS continues exactly; FIRE
    keeps its velocities and time step but restarts its mixing schedule), and counts
    `steps` and the wall time from the very start. The trajectory appears, complete, at
    the end. A relaxation that fails with an error (not an interruption) leaves nothing.

    Args:
        atoms: start structure (Å).
        calculator: an ASE calculator (e.g. relax.calculator.MLHCalculator).
        fmax: stop when every |F_a| < fmax (eV/Å).
        steps: most optimizer steps.
        optimizer: "BFGS" or "FIRE" (ase.optimize).
        trajectory: ASE trajectory file of every step; None for none (and no resuming).
        logfile: the optimizer's log ("-" for stdout, None for none).

    Raises:
        MLHError: a bad optimizer name, fmax or step count, unusable files of an
            interrupted run (and the calculator's errors).
    """
    from ase.io.trajectory import Trajectory
    from ase.optimize import BFGS, FIRE

    optimizers = {"BFGS": BFGS, "FIRE": FIRE}
    if optimizer not in optimizers:
        raise MLHError(f"unknown optimizer {optimizer!r}; choose BFGS or FIRE")
    if not fmax > 0 or steps < 0:
        raise MLHError(f"fmax must be positive and steps >= 0, got {fmax} eV/Å and {steps}")
    start = time.perf_counter()
    atoms = atoms.copy()
    files = None if trajectory is None else _ResumeFiles.beside(Path(trajectory))
    frames, state = _interrupted_steps(files, atoms, optimizer) if files else ([], {})
    if frames:
        atoms.positions = frames[-1].positions
        if state.get("restart") is None:  # killed before the first step was saved
            files.restart.unlink(missing_ok=True)
        else:
            files.restart.write_text(state["restart"])
    earlier_seconds = float(state.get("seconds", 0.0))
    energies = [frame.get_potential_energy() for frame in frames]
    free_energies = [frame.get_potential_energy(force_consistent=True) for frame in frames]
    max_forces = [_max_force(frame.get_forces()) for frame in frames]
    atoms.calc = calculator

    def save_step() -> None:
        """State first, then the frame: a kill between the two redoes one step exactly."""
        restart = files.restart.read_text() if files.restart.exists() else None
        seconds = earlier_seconds + time.perf_counter() - start
        with atomic_output(files.state) as tmp:
            tmp.write_text(json.dumps({"optimizer": optimizer, "seconds": seconds,
                                       "restart": restart}))
        with Trajectory(str(files.frames), "a") as partial:
            partial.write(atoms)

    resumed_here = bool(frames)

    def observe() -> None:
        nonlocal resumed_here
        if resumed_here:  # the optimizer's step 0 is the last step of the interrupted run
            resumed_here = False
            return
        energies.append(atoms.get_potential_energy())
        free_energies.append(atoms.get_potential_energy(force_consistent=True))
        max_forces.append(_max_force(atoms.get_forces()))
        if files is not None:
            save_step()

    try:
        dynamics = optimizers[optimizer](
            atoms, logfile=logfile, restart=None if files is None else str(files.restart))
        dynamics.attach(observe)
        steps_done = len(frames) - 1 if frames else 0
        converged = bool(dynamics.run(fmax=fmax, steps=max(steps - steps_done, 0)))
    except Exception:
        if files is not None:
            files.remove()
        raise
    if files is not None:
        os.replace(files.frames, trajectory)
        files.remove()
    forces = atoms.get_forces().copy()
    relaxed = atoms.copy()
    relaxed.calc = None
    return RelaxationResult(
        atoms=relaxed, energies=np.array(energies), free_energies=np.array(free_energies),
        max_forces=np.array(max_forces), forces=forces, converged=converged, fmax=float(fmax),
        optimizer=optimizer, seconds=earlier_seconds + time.perf_counter() - start)


def relaxation_dataset(result: RelaxationResult, attrs: dict[str, Any] | None = None) -> xr.Dataset:
    """The relaxation as a Dataset: energies per step, relaxed structure and forces.

    Args:
        result: from `relax`.
        attrs: provenance (str/int/float values), stored with a `provenance_` prefix.
    """
    atoms = result.atoms
    dataset_attrs: dict[str, Any] = {
        "optimizer": result.optimizer,
        "fmax_eV_per_angstrom": result.fmax,
        "converged": int(result.converged),
        "steps": result.steps,
        "wall_time_seconds": result.seconds,
        "creation_library": "mlh",
        "creation_library_version": mlh_version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    dataset_attrs.update({f"provenance_{k}": v for k, v in (attrs or {}).items()})
    return xr.Dataset(
        {
            "energy": _variable("step", result.energies, "total energy", "eV"),
            "free_energy": _variable("step", result.free_energies, "free energy", "eV"),
            "max_force": _variable("step", result.max_forces, "largest atomic force", "eV/Å"),
            "numbers": _variable("atom", atoms.numbers, "atomic number", "1"),
            "positions": _variable(("atom", "xyz"), atoms.positions, "relaxed positions", "Å"),
            "forces": _variable(("atom", "xyz"), result.forces, "forces of the relaxed structure",
                                "eV/Å"),
            "cell": _variable(("cell_vector", "xyz"), atoms.cell.array, "lattice vectors (rows)",
                              "Å"),
            "pbc": _variable("cell_vector", atoms.pbc.astype(np.int8), "periodic directions", "1"),
        },
        coords={"step": np.arange(len(result.energies)), "atom": np.arange(len(atoms)),
                "xyz": ["x", "y", "z"], "cell_vector": ["a", "b", "c"]},
        attrs=dataset_attrs,
    )


def relaxation_from_dataset(dataset: xr.Dataset) -> RelaxationResult:
    """The RelaxationResult that `relaxation_dataset` stored (eV, Å)."""
    atoms = Atoms(numbers=dataset.numbers.values, positions=dataset.positions.values,
                  cell=dataset.cell.values, pbc=dataset.pbc.values.astype(bool))
    attrs = dataset.attrs
    return RelaxationResult(
        atoms=atoms, energies=dataset.energy.values, free_energies=dataset.free_energy.values,
        max_forces=dataset.max_force.values, forces=dataset.forces.values,
        converged=bool(attrs["converged"]), fmax=float(attrs["fmax_eV_per_angstrom"]),
        optimizer=str(attrs["optimizer"]), seconds=float(attrs["wall_time_seconds"]))
