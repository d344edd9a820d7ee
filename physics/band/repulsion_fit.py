"""Fit the band-energy route's pair repulsion to GPAW records: E_rep = E_DFT - A_band[H_model]
and F_rep = F_DFT - F_band (eV, eV/Å), by physics.band.repulsion.fit_repulsion."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np

from mlh.errors import MLHError
from mlh.gpaw.record_settings import record_smearing_width
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from physics.band.repulsion import (
    DEFAULT_CUTOFF,
    DEFAULT_POWERS,
    FitReport,
    Repulsion,
    fit_repulsion,
)
from physics.band.route import BandEnergyRoute

__all__ = ["fit_repulsion_to_records"]


def fit_repulsion_to_records(
    predictor: Predictor,
    records: Sequence[HamiltonianRecord],
    cutoff: float = DEFAULT_CUTOFF,
    powers: tuple[int, ...] = DEFAULT_POWERS,
    energy_sigma: float = 1e-3,
    force_sigma: float = 0.05,
    ridge: float = 1e-2,
    names: Sequence[str] | None = None,
) -> tuple[Repulsion, FitReport]:
    """Fit E_rep to E_DFT - A_band[H_model] and F_DFT - F_band[H_model] of GPAW records.

    Each record's band terms use its own SCF k-points (labels) and smearing width, and the
    model's H at its positions (physics.band.repulsion.fit_repulsion does the least squares).

    Args:
        predictor: the model the repulsion belongs to.
        records: GPAW-made records with labels (free_energy, n_electrons, k-points; forces
            optional).
        cutoff, powers, energy_sigma, force_sigma, ridge: as in fit_repulsion.
        names: record names for the metadata and error messages.

    Raises:
        MLHError: a record without free energy, electron count or k-points, or any error
            of the route or the fit.
    """
    from mlh.gpaw.record_settings import record_atoms

    names = [f"record {n}" for n in range(len(records))] if names is None else list(names)
    routes: dict[float, BandEnergyRoute] = {}
    structures, targets, forces = [], [], []
    for name, record in zip(names, records):
        labels = record.labels
        if labels.free_energy is None or labels.kpoints is None:
            raise MLHError(f"{name}: the record has no free energy or k-points in its labels")
        width = record_smearing_width(record)
        route = routes.setdefault(width, BandEnergyRoute(predictor, width=width, skin=0.0))
        atoms = record_atoms(record)
        band = route.evaluate(atoms, forces=labels.forces is not None, kpoints=labels.kpoints,
                              kpoint_weights=labels.kpoint_weights, source=name)
        if abs(band.n_electrons - (labels.n_electrons or band.n_electrons)) > 1e-9:
            raise MLHError(f"{name}: {labels.n_electrons} electrons in the record but "
                           f"{band.n_electrons} from the model's GPAW setups")
        structures.append(atoms)
        targets.append(labels.free_energy - band.band_free_energy)
        forces.append(None if labels.forces is None else labels.forces - band.forces)
    metadata = {"records": names,
                "target": "E_DFT(free) - A_band[H_model], F_DFT - F_band[H_model]",
                "model_gpaw": predictor.metadata.get("gpaw", {}),
                "smearing_widths_eV": sorted(routes)}
    with jax.enable_x64(True):
        return fit_repulsion(structures, np.array(targets), forces, cutoff=cutoff, powers=powers,
                             energy_sigma=energy_sigma, force_sigma=force_sigma, ridge=ridge,
                             metadata=metadata)
