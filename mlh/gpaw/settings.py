"""Validated settings of a GPAW LCAO reference calculation (read from YAML or defaults).

Lengths in Å, energies in eV. The defaults are the GEARS H choices (PBE, szp(dzp),
h = 0.2 Å) with GPAW's default density convergence (1e-4 electrons per valence electron).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlh.errors import MLHError

__all__ = [
    "GPAWSettings", "load_settings", "settings_from_provenance", "gpaw_settings_of",
    "baseline_metadata", "baseline_settings_of",
]


class GPAWSettings(BaseModel):
    """How each structure is computed.

    Attributes:
        xc: exchange-correlation functional.
        basis: GPAW basis name, e.g. "szp(dzp)" (first zeta + polarisation of dzp).
        h: real-space grid spacing (Å).
        kpts: Monkhorst-Pack grid of the SCF; None derives it from `kpoint_density`.
        kpoint_density: k-points per reciprocal Å (ASE's definition) when `kpts` is None.
        setups: GPAW setups per element symbol, e.g. {"W": "6"} for the semicore-free W.
        smearing_width: Fermi-Dirac width (eV).
        density_convergence: SCF density criterion (electrons per valence electron).
        maxiter: SCF iteration limit.
        spinpol: spin-polarised calculation.
        forces: compute forces as labels.
        baseline: also store the zeroth-step Hamiltonian H0 (the Kohn-Sham H of the initial
            density, superposed neutral atoms) beside H; costs one initialisation, no SCF.
        first_step_share: 0 stores H0 as the baseline; s > 0 stores GPAW's first SCF step
            from it, linearly mixed: B = H0 + s (H[n0] - H0), n0 the density of H0's
            occupied states (one diagonalisation and one potential more; ~1/eps_inf is a
            good s: 0.45 for SiO2, docs/predictor.md).
            n0 is made on the k grid of `kpoint_density` (so `kpts` must be None), which
            the records and a model trained on them keep.
        task: "scf" (H, S and labels), "overlap" (S only, no SCF) or "baseline" (S and H0,
            no SCF).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    xc: str = "PBE"
    basis: str = "szp(dzp)"
    h: float = Field(0.2, gt=0.05, le=0.5)
    kpts: tuple[int, int, int] | None = None
    kpoint_density: float = Field(2.0, gt=0)
    setups: dict[str, str] = Field(default_factory=dict)
    smearing_width: float = Field(0.01, ge=0)
    density_convergence: float = Field(1e-4, gt=0)
    maxiter: int = Field(300, gt=0)
    spinpol: bool = False
    forces: bool = True
    baseline: bool = False
    first_step_share: float = Field(0.0, ge=0, le=1)
    task: Literal["scf", "overlap", "baseline"] = "scf"

    @model_validator(mode="after")
    def _first_step_grid(self) -> "GPAWSettings":
        if self.first_step_share and self.kpts is not None:
            raise ValueError("a first-step baseline takes its k grid from kpoint_density (the "
                             "same rule for every cell a model meets), so kpts must be unset")
        return self

    def scf_kpts(self, cell: np.ndarray, pbc: np.ndarray) -> tuple[int, int, int]:
        """The SCF Monkhorst-Pack grid for this cell (1 along non-periodic directions)."""
        if self.kpts is not None:
            grid = np.array(self.kpts)
        else:
            from ase import Atoms
            from ase.calculators.calculator import kptdensity2monkhorstpack

            grid = np.array(
                kptdensity2monkhorstpack(Atoms(cell=cell, pbc=pbc), self.kpoint_density, even=False)
            )
        grid[~np.asarray(pbc, bool)] = 1
        return tuple(int(n) for n in grid)

    def provenance(self) -> dict[str, Any]:
        """Flat mapping stored with each record."""
        return {
            "xc": self.xc,
            "basis": self.basis,
            "grid_spacing_angstrom": self.h,
            "setups": yaml.safe_dump(self.setups, default_flow_style=True).strip(),
            "smearing": f"fermi-dirac {self.smearing_width} eV",
            "density_convergence": self.density_convergence,
            "spinpol": int(self.spinpol),
            "task": self.task,
            **({"baseline_first_step_share": self.first_step_share,
                "baseline_first_step_kpoint_density": self.kpoint_density}
               if self.first_step_share else {}),
        }


def load_settings(path: Path | None, **overrides: Any) -> GPAWSettings:
    """Settings from a YAML file (or defaults) with `overrides` applied; MLHError on bad input."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise MLHError(f"{path}: cannot read settings: {err}") from None
        if not isinstance(data, dict):
            raise MLHError(f"{path}: settings must be a mapping, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return GPAWSettings(**data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise MLHError(f"{path or 'settings'}: {where}: {first['msg']}") from None


def merged_settings(provenances: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The GPAW settings shared by records {name: provenance}: xc and basis must agree,
    setups are merged (one species' setup must agree wherever it is given)."""
    merged: dict[str, Any] | None = None
    for name, provenance in provenances.items():
        try:
            settings = settings_from_provenance(provenance)
        except MLHError as err:
            raise MLHError(f"{name}: {err}") from None
        if merged is None:
            merged = settings
            continue
        for key in ("xc", "basis"):
            if settings[key] != merged[key]:
                raise MLHError(f"{name}: {key} {settings[key]!r} differs from the other records' "
                               f"{merged[key]!r}")
        for species, setup in settings["setups"].items():
            if merged["setups"].setdefault(species, setup) != setup:
                raise MLHError(f"{name}: setup {setup!r} of {species} differs from the other "
                               f"records' {merged['setups'][species]!r}")
    if merged is None:
        raise MLHError("no records to take GPAW settings from")
    return merged


def settings_from_provenance(provenance: dict[str, Any]) -> dict[str, Any]:
    """The xc, basis and setups a GPAW-made record was computed with (JSON-able dict)."""
    try:
        setups = yaml.safe_load(str(provenance.get("setups", "{}"))) or {}
        return {"xc": str(provenance["xc"]), "basis": str(provenance["basis"]),
                "setups": {str(k): str(v) for k, v in dict(setups).items()}}
    except (KeyError, yaml.YAMLError, TypeError, ValueError) as err:
        raise MLHError(f"record provenance lacks the GPAW settings ({err})") from None


FIRST_STEP_KEYS = {"first_step_share": "baseline_first_step_share",
                   "kpoint_density": "baseline_first_step_kpoint_density"}
"""GPAWSettings field of each first-step setting: the record provenance key that keeps it."""


def baseline_metadata(provenances: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the baseline of records {name: provenance} depends on beyond xc, basis and
    setups, which must agree between the records: the grid spacing h (Å) and, for a
    first-step baseline, its mixing share and k-point density (1/Å; 0 share: H0 itself)."""
    defaults = GPAWSettings()
    wanted = {"h": ("grid_spacing_angstrom", defaults.h),
              **{name: (key, getattr(defaults, name)) for name, key in FIRST_STEP_KEYS.items()}}
    values = {name: {record: float(p.get(key, default)) for record, p in provenances.items()}
              for name, (key, default) in wanted.items()}
    metadata = {}
    for name, per_record in values.items():
        first = next(iter(per_record.values()), wanted[name][1])
        for record, value in per_record.items():
            if abs(value - first) > 1e-9:
                raise MLHError(f"{record}: {wanted[name][0]} {value} differs from the other "
                               f"records' {first}; the baseline depends on it")
        metadata[name] = first
    if not metadata["first_step_share"]:
        del metadata["first_step_share"], metadata["kpoint_density"]
    return metadata


def gpaw_settings_of(predictor: Any) -> GPAWSettings:
    """The GPAW settings (xc, basis, setups) of a model's training data, for S.

    `predictor` is an mlh.model.predictor.Predictor (anything with its `metadata` dict).
    """
    gpaw = predictor.metadata.get("gpaw")
    if not gpaw:
        raise MLHError("the model does not record the GPAW settings of its training data")
    return GPAWSettings(task="overlap", **gpaw)


def baseline_settings_of(predictor: Any) -> GPAWSettings:
    """The GPAW settings of a correction model's baseline (task "baseline": S and H0 or the
    first-step B, no SCF): its training data's xc, basis, setups, grid spacing and, for a
    first-step baseline, its share and k-point density."""
    baseline = predictor.metadata.get("baseline")
    if not baseline:
        raise MLHError("the model does not record the settings of its zeroth-step H0")
    return gpaw_settings_of(predictor).model_copy(update={
        "task": "baseline", "h": float(baseline["h"]),
        **{name: float(baseline[name]) for name in FIRST_STEP_KEYS if name in baseline}})
