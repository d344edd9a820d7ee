"""ASE calculator: energies and forces from a machine-learned Hamiltonian.

Three routes (docs/physics.md has the measured accuracy and cost of each):

- "dft" (default): the model's H fixes the occupied states and GPAW evaluates its
  Kohn-Sham (or Harris-Foulkes) functional and LCAO forces at their density, plus the
  response term of a non-self-consistent density, so the forces are exactly -dA_KS/dR
  (physics.dft.forces). Energy errors second order in the error of H, but a GPAW setup per
  call (timings in docs/physics.md). A correction model's H is GPAW's zeroth-step H0 plus
  its dH, and its forces include d/dR of H0 (physics.dft.baseline_forces).
- "band" (the band-energy route): E = A_band[H_model, S] + E_rep, forces exactly -dE/dR by
  one gradient through the model and S (physics.band.route), much cheaper per call after
  compilation. Needs a
  repulsion (physics.band.repulsion), by default `repulsion.json` in the model folder. Its
  accuracy is that of the model's band energy plus a pair potential: poor for the
  bundled model (see docs/physics.md). Direct models only (it has no H0(R)).
- "scf": GPAW's own SCF started from the density of the model's H instead of superposed
  atoms (physics.dft.scf): GPAW's energies and forces to its convergence criteria, in
  fewer iterations than GPAW's usual start; direct and correction models. Along a
  relaxation each later step starts from the previous converged state moved with the
  atoms, as GPAW does, or from the model corrected by its error at the previous step
  (`scf_later_start`).

Properties: "energy" (extrapolated to zero width), "free_energy" (Mermin free energy, the
one the band route's forces belong to) and "forces". Units: eV, Å. Works for periodic
cells and for molecules in a box (a cell is required, as for GPAW; k-points only along
periodic directions). Results are cached by ASE's Calculator (no recomputation for
unchanged atoms); the band route also reuses its neighbour lists while atoms move less than
skin / 2. Bad input (species the model lacks, atoms closer than 0.5 Å, a NaN Hamiltonian,
no cell) raises `CalculatorInputError`, an mlh.errors.MLHError and an ASE InputError.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, InputError, all_changes
from pydantic import ValidationError

from mlh.errors import MLHError
from mlh.gpaw.settings import GPAWSettings, gpaw_settings_of
from mlh.model.predictor import Predictor
from physics.dft.functional import FITTED_SHARE_FILE, fitted_share, harris_share

__all__ = ["MLHCalculator", "CalculatorInputError", "REPULSION_FILE"]

REPULSION_FILE = "repulsion.json"
"""Default repulsion file name inside a model folder."""


class CalculatorInputError(MLHError, InputError):
    """Bad input to MLHCalculator: an MLHError that ASE also recognises as an InputError."""


class MLHCalculator(Calculator):
    """Energy and forces from a predictor's Hamiltonian (see the module docstring).

    Args:
        model: a Predictor or its folder.
        route: "dft" (GPAW's functional at the model's density), "band" (band energy +
            repulsion) or "scf" (GPAW's SCF started from the model's density).
        repulsion: band route: a Repulsion or a JSON file; default MODEL/repulsion.json.
        kpts: Monkhorst-Pack grid; default from `kpoint_density` (1 along non-periodic
            directions, Γ for molecules).
        kpoint_density: k-points per reciprocal Å when kpts is not given.
        width: Fermi-Dirac width (eV).
        skin: extra reach of the model's neighbour lists (Å).
        charge: net charge (e).
        h: dft and scf routes: GPAW's grid spacing (Å).
        functional: dft route: "kohn-sham" (variational), "harris" (Harris-Foulkes), the
            "mean" of the two, or a Harris-Foulkes share s in [0, 1] ((1 - s) Kohn-Sham +
            s Harris), or "fitted": the share stored in the model folder (fitted on its
            validation records by benchmarks/harris_share.py --write-model); energy and
            forces are the chosen functional's (physics.dft.harris_forces). The best share
            is the model's own: 0.37 for SiO2, 0.08 for metallic Nb:WSe2, where the mean
            is worse than Kohn-Sham.
        response: dft route: add the response term to GPAW's forces (exact -dA/dR);
            False for GPAW's forces of the state alone (cheaper, not conservative).
        maxiter: scf route: most SCF iterations (GPAW's default 300).
        scf_later_start: scf route: how each SCF after the first starts
            (physics.dft.scf.ModelSCFRoute's later_start): "previous", the previous
            converged state moved with the atoms (GPAW's own reuse); "corrected", the
            model's H plus its error at the previous step; "hamiltonian", the model alone.
        label, atoms, directory: as for ase.calculators.calculator.Calculator.

    Attributes:
        last_result: the route's full result of the last calculation
            (physics.band.route.EnergyResult, physics.dft.functional.DFTFunctionalResult or
            physics.dft.scf.SCFResult).
        seconds: wall time of the last calculation (s).
        n_calculations: calculations done (cache hits excluded).
    """

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(
        self,
        model: Predictor | str | os.PathLike,
        route: Literal["dft", "band", "scf"] = "dft",
        repulsion=None,
        kpts: tuple[int, int, int] | None = None,
        kpoint_density: float = 2.0,
        width: float = 0.01,
        skin: float = 0.5,
        charge: float = 0.0,
        h: float = 0.2,
        functional: Literal["kohn-sham", "harris", "mean", "fitted"] | float = "kohn-sham",
        response: bool = True,
        maxiter: int = 300,
        scf_later_start: str = "previous",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if route not in ("band", "dft", "scf"):
            raise CalculatorInputError(f"unknown route {route!r}; choose 'dft', 'band' or 'scf'")
        try:
            if functional == "fitted":
                if isinstance(model, Predictor):
                    raise MLHError("functional 'fitted' reads the model folder's "
                                   f"{FITTED_SHARE_FILE}: give the folder, or a number")
                functional = fitted_share(Path(model))
            harris_share(functional)
        except MLHError as error:
            raise CalculatorInputError(str(error)) from None
        if kpts is not None and (np.shape(kpts) != (3,) or np.min(kpts) < 1):
            raise CalculatorInputError(f"kpts must be three positive integers, got {kpts}")
        try:
            predictor = model if isinstance(model, Predictor) else Predictor.load(Path(model))
            self.predictor = predictor
            self.route = route
            self.kpts = None if kpts is None else tuple(int(n) for n in kpts)
            self.kpoint_density = float(kpoint_density)
            self.width = float(width)
            self.charge = float(charge)
            self.h = float(h)
            self.functional = functional
            self.response = bool(response)
            self._band_route = (self._make_band_route(model, repulsion, skin)
                                if route == "band" else None)
            self._dft_route = self._make_dft_route(skin) if route == "dft" else None
            self._scf_route = (self._make_scf_route(maxiter, scf_later_start, skin)
                               if route == "scf" else None)
        except MLHError as error:
            raise CalculatorInputError(str(error)) from None
        self.last_result = None
        self.seconds = 0.0
        self.n_calculations = 0

    @classmethod
    def from_gpaw_settings(cls, model: Predictor | str | os.PathLike, settings: GPAWSettings,
                           route: Literal["dft", "band", "scf"] = "dft", **kwargs) -> MLHCalculator:
        """A calculator with the grid spacing, k-points and Fermi-Dirac width of GPAW
        `settings` (those its reference data were computed with); other options as for
        the constructor."""
        return cls(model, route=route, kpts=settings.kpts, kpoint_density=settings.kpoint_density,
                   h=settings.h, width=settings.smearing_width, **kwargs)

    def _make_band_route(self, model, repulsion, skin: float):
        from physics.band.repulsion import Repulsion, read_repulsion
        from physics.band.route import BandEnergyRoute

        if repulsion is None:
            if isinstance(model, Predictor):
                raise MLHError("route 'band' needs a repulsion: pass repulsion= (a Repulsion "
                               "or a JSON file) when the model is given as a Predictor")
            repulsion = Path(model) / REPULSION_FILE
        if not isinstance(repulsion, Repulsion):
            if not Path(repulsion).is_file():
                raise MLHError(f"{repulsion}: no repulsion file; fit one with "
                               f"physics.band.repulsion_fit.fit_repulsion_to_records")
            repulsion = read_repulsion(repulsion)
        return BandEnergyRoute(self.predictor, repulsion=repulsion, width=self.width,
                               kpts=self.kpts, kpoint_density=self.kpoint_density, skin=skin,
                               charge=self.charge)

    def _gpaw_settings(self, **extra):
        """GPAW settings of the dft and scf routes: the model's xc, basis and setups, our h,
        width and k grid (and `extra` fields)."""
        core = gpaw_settings_of(self.predictor)
        try:
            return GPAWSettings(xc=core.xc, basis=core.basis, setups=core.setups, h=self.h,
                                kpts=self.kpts, kpoint_density=self.kpoint_density,
                                smearing_width=self.width, **extra)
        except ValidationError as error:
            first = error.errors()[0]
            raise MLHError(f"{first['loc'][0]}: {first['msg']}") from None

    def _make_dft_route(self, skin: float):
        from physics.dft.forces import ModelDFTRoute

        return ModelDFTRoute(self.predictor, self._gpaw_settings(), charge=self.charge, skin=skin,
                             functional=self.functional)

    def _make_scf_route(self, maxiter: int, later_start: str, skin: float):
        from physics.dft.scf import ModelSCFRoute

        return ModelSCFRoute(self.predictor, self._gpaw_settings(maxiter=maxiter),
                             charge=self.charge, later_start=later_start, skin=skin)

    def calculate(self, atoms: Atoms | None = None, properties=("energy",),
                  system_changes=all_changes) -> None:
        """Compute energy, free energy and forces (the band route always computes forces, the
        dft and scf routes only when asked: ask for forces first to avoid a second GPAW run)."""
        super().calculate(atoms, properties, system_changes)
        start = time.perf_counter()
        try:
            if self.route == "band":
                self._calculate_band()
            else:
                self._check_cell()
                if self.route == "dft":
                    self._calculate_dft("forces" in properties)
                else:
                    self._calculate_scf("forces" in properties)
        except MLHError as error:
            raise CalculatorInputError(str(error)) from None
        self.seconds = time.perf_counter() - start
        self.n_calculations += 1

    def _calculate_band(self) -> None:
        result = self._band_route.evaluate(self.atoms)
        self.last_result = result
        self.results = {"energy": result.energy, "free_energy": result.free_energy,
                        "forces": result.forces}

    def _check_cell(self) -> None:
        if abs(np.linalg.det(self.atoms.cell.array)) < 1e-6:
            raise MLHError("a cell is required (put a molecule in a box)")

    def _calculate_dft(self, forces: bool) -> None:
        result = self._dft_route.evaluate(self.atoms, forces=forces, response=self.response)
        self.last_result = result
        energy, free_energy = result.energies(self.functional)
        self.results = {"energy": energy, "free_energy": free_energy}
        if forces:
            self.results["forces"] = result.forces

    def _calculate_scf(self, forces: bool) -> None:
        result = self._scf_route.evaluate(self.atoms, forces=forces)
        self.last_result = result
        self.results = {"energy": result.energy, "free_energy": result.free_energy}
        if forces:
            self.results["forces"] = result.forces
