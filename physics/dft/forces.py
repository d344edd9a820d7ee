"""The DFT-functional route for a predictor, with forces that are exactly -dE_KS/dR.

A(R) = E_KS[n(rho(H_model(R), S(R)))] - T S[f]: GPAW's Kohn-Sham Mermin free energy at the
density of the model's occupied states (physics.dft.functional), with the entropy of the
model's occupations f. GPAW's LCAO force routine assumes a self-consistent state; for any
installed state it returns

    F_GPAW = -dE_KS/dR|_rho + Tr[W dS/dR],     W = sum f eps c c^H of the model's H,

while dA/dR = dE_KS/dR|_rho + Tr[H[n_out] d rho/dR] + d(-TS)/dR. With the model's own
eigenproblem, d(-TS)/dR = -Tr[H_model d rho/dR] - Tr[W dS/dR], so

    F = -dA/dR = F_GPAW - Tr[(H[n_out] - H_model) d rho/dR],

the derivative taken through rho(H_model(R), S(R)) at fixed electron count:
d/dR {Tr[G_H H_model(R)] + Tr[G_S S(R)]} with G_H, G_S the gradients of
Tr[(H[n_out] - H_model) rho(H, S)] (physics.dft.response), one vector-Jacobian product
through the model and S(R) (physics.band.route.BandEnergyRoute.trace_gradient). At a
self-consistent H the correction vanishes. The model's H is evaluated in float64 in JAX
and S comes from GPAW's two-centre tables (equal to GPAW's S to 1e-6), so the energy is a
smooth function of the positions and finite differences check the forces.

Units: eV, Å.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace

import numpy as np
from ase import Atoms

from mlh.gpaw.record_settings import record_atoms
from mlh.gpaw.settings import GPAWSettings
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from physics.band.route import BandEnergyRoute
from physics.density_matrix import kspace_blocks
from physics.dft.functional import DFTFunctionalResult, dft_functional_for_record
from physics.dft.response import density_matrix_gradients

__all__ = ["ModelDFTRoute", "wrapped_record"]


def wrapped_record(record: HamiltonianRecord) -> HamiltonianRecord:
    """The record with its atoms wrapped into the cell as GPAW wraps them.

    The model's topology keeps positions continuous (not wrapped) while atoms move, but
    GPAW wraps them and its Bloch sums refer to the wrapped positions. Moving atom i by
    -n_i @ cell changes the lattice shift of pair (i, j, R) to R + n_j - n_i; the blocks,
    and the order of the pairs, stay as they are.
    """
    from mlh.gpaw.overlap import wrapped_positions

    atoms = record_atoms(record)
    wrapped = wrapped_positions(atoms)
    offsets = np.rint((atoms.positions - wrapped) @ np.linalg.inv(record.cell)).astype(int)
    if not offsets.any():
        return record
    return replace(record, positions=wrapped,
                   pair_shift=record.pair_shift + offsets[record.pair_j] - offsets[record.pair_i])


class ModelDFTRoute:
    """Kohn-Sham (and Harris-Foulkes) energies and exact Kohn-Sham forces of a predictor.

    Args:
        predictor: the model (no message passing: its H must be smooth in the positions).
        settings: GPAW settings (xc, basis, setups, h, smearing width, k grid rule) of the
            model's training data.
        charge: net charge (e).
        skin: extra reach of the model's neighbour lists (Å).
    """

    def __init__(self, predictor: Predictor, settings: GPAWSettings, charge: float = 0.0,
                 skin: float = 0.5):
        self.settings = settings
        self.charge = float(charge)
        self.band_route = BandEnergyRoute(
            predictor, repulsion=None, width=settings.smearing_width, kpts=settings.kpts,
            kpoint_density=settings.kpoint_density, skin=skin, charge=charge)

    def evaluate(
        self,
        atoms: Atoms,
        forces: bool = True,
        response: bool = True,
        source: str = "structure",
        log: io.TextIOBase | str | None = None,
    ) -> DFTFunctionalResult:
        """Energies and forces (eV, eV/Å) of `atoms` at the model's density.

        Args:
            atoms: the structure (a cell is required).
            forces: also compute forces.
            response: add the response term (exact -dE_KS/dR); False gives GPAW's forces
                of the state alone.
            source: the structure's name in error messages.
            log: GPAW text log.

        Raises:
            MLHError: species the model lacks, atoms too close, NaN in H, or any error of
                physics.dft.functional.dft_functional_for_record.
        """
        record = wrapped_record(self.band_route.predicted_record(atoms, source))
        result = dft_functional_for_record(
            record, self.settings, kpts=self.settings.scf_kpts(atoms.cell.array, atoms.pbc),
            forces=forces, charge=self.charge, log=log,
            keep_output_hamiltonians=forces and response)
        if not (forces and response):
            return result
        start = time.perf_counter()
        correction = self._response_gradient(atoms, record, result, source)
        timings = {**result.timings, "response": time.perf_counter() - start}
        return replace(result, forces=result.forces - correction, output_hamiltonians=None,
                       timings=timings)

    def _response_gradient(self, atoms, record, result: DFTFunctionalResult,
                           source: str) -> np.ndarray:
        """d/dR Tr[(H[n_out] - H_model) rho(H_model(R), S(R))] (eV/Å; module docstring)."""
        kpoints, weights = result.kpoints, result.kpoint_weights
        real = np.isrealobj(result.output_hamiltonians)
        ks = [None if real else k for k in kpoints]
        n_spins = result.output_hamiltonians.shape[0]
        H = np.stack([np.stack([record.hamiltonian_k(k, s).toarray() for k in ks])
                      for s in range(n_spins)])
        S = np.stack([record.overlap_k(k).toarray() for k in ks])
        G_H, G_S = density_matrix_gradients(H, S, result.output_hamiltonians - H, weights,
                                            result.n_electrons, self.settings.smearing_width)
        rho_blocks = [part.sum(axis=0) for part in kspace_blocks(G_H, kpoints, weights, record)]
        W_blocks = [-part[0] for part in kspace_blocks(G_S[None], kpoints, weights, record)]
        return self.band_route.trace_gradient(atoms, rho_blocks, W_blocks, source)
