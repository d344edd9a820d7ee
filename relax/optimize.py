"""Fixed-cell structure relaxation with an ASE calculator, and its result as a Dataset.

`relax` runs ASE's BFGS or FIRE until the largest force is below `fmax` (seed 003 uses
20 meV/Å), writes the trajectory atomically (a temporary file renamed at the end, so a
failed run leaves nothing half-written) and returns the energies of every step.
`relaxation_dataset` labels the result (units, long names, provenance) for NetCDF.
Units: eV, Å.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
import xarray as xr
from ase import Atoms

from mlh import __version__ as mlh_version
from mlh.atomic import atomic_output
from mlh.errors import MLHError
from mlh.record_io import labelled_variable as _variable

__all__ = ["RelaxationResult", "relax", "relaxation_dataset", "DEFAULT_FMAX"]

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

    Args:
        atoms: start structure (Å).
        calculator: an ASE calculator (e.g. relax.calculator.MLHCalculator).
        fmax: stop when every |F_a| < fmax (eV/Å).
        steps: most optimizer steps.
        optimizer: "BFGS" or "FIRE" (ase.optimize).
        trajectory: ASE trajectory file of every step, written atomically; None for none.
        logfile: the optimizer's log ("-" for stdout, None for none).

    Raises:
        MLHError: a bad optimizer name, fmax or step count (and the calculator's errors).
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
    atoms.calc = calculator
    energies, free_energies, max_forces = [], [], []

    def record() -> None:
        energies.append(atoms.get_potential_energy())
        free_energies.append(atoms.get_potential_energy(force_consistent=True))
        max_forces.append(float(np.linalg.norm(atoms.get_forces(), axis=1).max(initial=0.0)))

    def run(trajectory_file) -> bool:
        dynamics = optimizers[optimizer](atoms, logfile=logfile)
        dynamics.attach(record)
        if trajectory_file is not None:
            dynamics.attach(trajectory_file.write)
        converged = dynamics.run(fmax=fmax, steps=steps)
        return bool(converged)

    if trajectory is None:
        converged = run(None)
    else:
        with atomic_output(trajectory) as tmp, Trajectory(str(tmp), "w", atoms) as file:
            converged = run(file)
    forces = atoms.get_forces().copy()
    relaxed = atoms.copy()
    relaxed.calc = None
    return RelaxationResult(
        atoms=relaxed, energies=np.array(energies), free_energies=np.array(free_energies),
        max_forces=np.array(max_forces), forces=forces, converged=converged, fmax=float(fmax),
        optimizer=optimizer, seconds=time.perf_counter() - start)


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
