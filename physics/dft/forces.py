"""The DFT-functional route for a predictor, with forces that are exactly -dA/dR.

A is the Kohn-Sham free energy at the model's density (below), the Harris-Foulkes one, or
their mean (`functional`; the Harris parts in physics.dft.harris_forces).

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
self-consistent H the correction vanishes.

A correction model predicts dH, and H = H0(R) + dH(R) with GPAW's zeroth-step H0 at the
route's k-points (read from the route's GPAW object before the model's state replaces the
initial density; no SCF); the response then also needs d/dR Tr[G_H H0(R)], which
physics.dft.baseline_forces computes from GPAW's LCAO force terms and the potential's
response to the moving atomic densities. A first-step correction model's baseline is
B = H0 + s (H[n0] - H0), n0 the density of H0's occupied states on the model's k grid
(which the route's must be); d/dR Tr[G B] adds s d/dR Tr[G H[n0]], taken at H0's state
(a second GPAW object) with H[n0]'s fixed-density-matrix derivative and its kernel
(physics.dft.harris_forces.fixed_density_matrix_derivative), whose Tr[Y_G d rho0/dR] runs
through rho0(H0(R), S(R)) as the model's own response does.

The model's H is evaluated in float64 in JAX and S comes from GPAW's two-centre tables
(equal to GPAW's S to 1e-6), so the energy is a smooth function of the positions and
finite differences check the forces.

Units: eV, Å.
"""

from __future__ import annotations

import io
import time
from dataclasses import replace

import numpy as np
from ase import Atoms

from mlh.errors import MLHError
from mlh.gpaw.record_settings import record_atoms
from mlh.gpaw.reference import bloch_matrices
from mlh.gpaw.settings import GPAWSettings
from mlh.gpaw.states import first_step_mix
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord
from physics.band.route import BandEnergyRoute
from physics.density_matrix import kspace_blocks
from physics.dft.functional import (
    BaselineHamiltonian,
    DFTFunctionalResult,
    check_baseline_grid,
    functional_at_state,
    gpaw_calculation,
    harris_share,
    install_density,
    record_inputs,
)
from physics.dft.harris_forces import fixed_density_matrix_derivative, state_forces
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
    """Kohn-Sham and Harris-Foulkes energies of a predictor, and the exact forces of one of
    them (or of their mean).

    Args:
        predictor: the model (no message passing: its H must be smooth in the positions).
        settings: GPAW settings (xc, basis, setups, h, smearing width, k grid rule) of the
            model's training data.
        charge: net charge (e).
        skin: extra reach of the model's neighbour lists (Å).
        functional: whose free energy the forces are minus the gradient of: "kohn-sham",
            "harris" (physics.dft.harris_forces), their "mean", or a Harris-Foulkes share s
            in [0, 1] ((1 - s) A_KS + s A_HF; physics.dft.functional.harris_share).

    Raises:
        MLHError: an unknown functional, or a correction model with a charge or another
            grid spacing than its H0's.
    """

    def __init__(self, predictor: Predictor, settings: GPAWSettings, charge: float = 0.0,
                 skin: float = 0.5, functional: str | float = "kohn-sham"):
        self.harris_share = harris_share(functional)
        self.settings = settings
        self.charge = float(charge)
        self.correction = predictor.config.target == "correction"
        self.first_step = None
        if self.correction:
            baseline = check_baseline_grid(predictor, settings)
            if baseline.first_step_share:
                self.first_step = baseline
            if self.charge:
                raise MLHError(f"a correction model's forces need a neutral structure "
                               f"(GPAW's H0 forces), got charge {charge:g}")
        self.band_route = BandEnergyRoute(
            predictor, repulsion=None, width=settings.smearing_width, kpts=settings.kpts,
            kpoint_density=settings.kpoint_density, skin=skin, charge=charge,
            baseline_added=True)

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
            response: add the response term (exact -dA/dR of the route's functional);
                False gives GPAW's forces of the state alone.
            source: the structure's name in error messages.
            log: GPAW text log.

        Raises:
            MLHError: species the model lacks, atoms too close, NaN in H, a structure GPAW
                cannot set up, or any error of physics.dft.functional.evaluate_dft_functional.
        """
        record = wrapped_record(self.band_route.predicted_record(atoms, source))
        structure = record_atoms(record)
        kpts = self.settings.scf_kpts(atoms.cell.array, atoms.pbc)
        settings, kpts, hamiltonian_k, overlap_k = record_inputs(record, self.settings, kpts)
        start = time.perf_counter()
        dft = gpaw_calculation(structure, settings, kpts, self.charge, log)
        timings = {"setup": time.perf_counter() - start}
        baseline = None
        if self.correction:
            start = time.perf_counter()
            if self.first_step is None:
                baseline = _Baseline(dft)
            else:
                self._check_first_step_grid(atoms, kpts)
                baseline = _FirstStep(dft, self.first_step.first_step_share, gpaw_calculation(
                    structure, settings, kpts, self.charge))
            hamiltonian_k = baseline.added_to(hamiltonian_k)
            timings["baseline"] = time.perf_counter() - start
        result = functional_at_state(dft, hamiltonian_k, forces=False, overlap_k=overlap_k,
                                     keep_output_hamiltonians=forces)
        result = replace(result, timings={**timings, **result.timings})
        if not forces:
            return result
        start = time.perf_counter()
        state = state_forces(dft, result.harris_states, self.harris_share)
        timings = {**result.timings, "forces": time.perf_counter() - start}
        if not response:
            return replace(result, forces=state.forces, output_hamiltonians=None,
                           harris_states=None, timings=timings)
        start = time.perf_counter()
        correction = self._response_gradient(atoms, record, hamiltonian_k, result,
                                             state.kernel_matrix, baseline, source)
        timings["response"] = time.perf_counter() - start
        return replace(result, forces=state.forces - correction, output_hamiltonians=None,
                       harris_states=None, timings=timings)

    def _response_gradient(self, atoms, record, hamiltonian_k, result: DFTFunctionalResult,
                           harris_matrix: np.ndarray, baseline: _Baseline | None,
                           source: str) -> np.ndarray:
        """d/dR Tr[A rho(H(R), S(R))] (eV/Å) with A = (1 - s)(H[n_out] - H) + s Y, s the
        route's Harris share and `harris_matrix` s Y (physics.dft.harris_forces)."""
        kpoints, weights = result.kpoints, result.kpoint_weights
        real = np.isrealobj(result.output_hamiltonians)
        ks = [None if real else k for k in kpoints]
        n_spins = result.output_hamiltonians.shape[0]
        H = np.stack([np.stack([hamiltonian_k(k, s) for k in ks]) for s in range(n_spins)])
        S = np.stack([record.overlap_k(k).toarray() for k in ks])
        A = (1.0 - self.harris_share) * (result.output_hamiltonians - H) + harris_matrix
        G_H, G_S = density_matrix_gradients(H, S, A, weights, result.n_electrons,
                                            self.settings.smearing_width)
        G_baseline, step_forces = G_H, 0.0
        if isinstance(baseline, _FirstStep):
            H0 = np.stack([np.stack([baseline.initial_hamiltonian(k, s) for k in ks])
                           for s in range(n_spins)])
            step_forces, G0_H, G0_S = baseline.step_response(
                G_H, H0, S, kpoints, weights, result.n_electrons, self.settings.smearing_width)
            G_baseline, G_S = (1.0 - baseline.share) * G_H + G0_H, G_S + G0_S
        rho_blocks = [part.sum(axis=0) for part in kspace_blocks(G_H, kpoints, weights, record)]
        W_blocks = [-part[0] for part in kspace_blocks(G_S[None], kpoints, weights, record)]
        gradient = self.band_route.trace_gradient(atoms, rho_blocks, W_blocks, source)
        if baseline is not None:
            gradient = gradient + baseline.trace_gradient(G_baseline, kpoints, weights) + step_forces
        return gradient

    def _check_first_step_grid(self, atoms: Atoms, kpts: tuple[int, int, int]) -> None:
        """MLHError unless the route's k grid is the one of the model's first-step n0."""
        wanted = GPAWSettings(kpoint_density=self.first_step.kpoint_density).scf_kpts(
            atoms.cell.array, atoms.pbc)
        if tuple(kpts) != tuple(wanted):
            raise MLHError(f"the model's first-step baseline takes n0 on the k grid {wanted} of "
                           f"{self.first_step.kpoint_density} k-points per 1/Å; the route's grid "
                           f"is {tuple(kpts)}")


class _Baseline(BaselineHamiltonian):
    """H0(k) of the route's GPAW object and the derivative of Tr[G H0]
    (physics.dft.baseline_forces).

    Made before the model's state replaces the initial density: keeps the initial potential
    and a copy of the initial density, which `trace_gradient` puts back for the time of its
    evaluation.
    """

    def __init__(self, dft):
        super().__init__(dft)
        self.dft = dft
        self.initial_state = _density_state(dft)

    def in_gpaw_order(self, G_skMM: np.ndarray, kpoints: np.ndarray, weights: np.ndarray
                      ) -> np.ndarray:
        """G (physics.dft.response's convention, at `kpoints`) in GPAW's density-matrix
        convention: on GPAW's k-points in their order, transposed, k weights included."""
        X = np.zeros((G_skMM.shape[0], len(self.kpoints), *G_skMM.shape[2:]), G_skMM.dtype)
        for n, k in enumerate(kpoints):
            X[:, self.index(k)] = weights[n] * G_skMM[:, n].transpose(0, 2, 1)
        return X

    def trace_gradient(self, G_skMM: np.ndarray, kpoints: np.ndarray, weights: np.ndarray
                       ) -> np.ndarray:
        """d/dR sum_k w_k Re Tr[G(k) H0(k)] (eV/Å) for G in physics.dft.response's convention."""
        from physics.dft.baseline_forces import baseline_trace_forces

        Y_skMM = self.in_gpaw_order(G_skMM, kpoints, weights)
        current = _density_state(self.dft)
        _restore_density_state(self.dft, self.initial_state)
        try:
            return -baseline_trace_forces(self.dft, Y_skMM)
        finally:
            _restore_density_state(self.dft, current)


class _FirstStep(_Baseline):
    """The first-step baseline B(k) = H0 + s (H[n0] - H0) of the route's k-points, n0 the
    density of H0's occupied states (installed in a second GPAW object `dft0` of the same
    k grid), and the derivative of Tr[G B]: (1 - s) that of Tr[G H0] (`trace_gradient`)
    plus s d/dR Tr[G H[n0]] = s {Tr[G dH[n0]/dR|_rho0] + Tr[Y_G d rho0/dR]}, the second
    through rho0(H0(R), S(R)) (`step_response`)."""

    def __init__(self, dft, share: float, dft0):
        super().__init__(dft)
        self.share, self.dft0 = share, dft0
        install_density(dft0, self.initial_hamiltonian)
        H1_skMM = bloch_matrices(dft0)[0]  # H[n0]: dft0's potential is v[n0] now
        if np.isrealobj(self.H0_skMM):
            H1_skMM = H1_skMM.real
        self.B_skMM = first_step_mix(self.H0_skMM, H1_skMM, share)

    def initial_hamiltonian(self, k: np.ndarray | None, spin: int) -> np.ndarray:
        """Dense H0(k) (eV) of one spin channel."""
        return super().hamiltonian(k, spin)

    def hamiltonian(self, k: np.ndarray | None, spin: int) -> np.ndarray:
        """Dense B(k) (eV) of one spin channel: the baseline the model's dH is added to."""
        return self.B_skMM[spin, self.index(k)]

    def step_response(self, G_skMM: np.ndarray, H0_skMM: np.ndarray, S_kMM: np.ndarray,
                      kpoints: np.ndarray, weights: np.ndarray, n_electrons: float,
                      width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s d/dR Tr[G H[n0]]|_rho0 in eV/Å, and s times the gradients (G0_H, G0_S) of
        Tr[Y_G rho0(H0, S)]) for G, H0 and S at `kpoints` (physics.dft.response's
        convention): the route adds G0_H to the H0 trace and G0_S to the S trace."""
        forces, Y = fixed_density_matrix_derivative(
            self.dft0, self.in_gpaw_order(G_skMM, kpoints, weights))
        order = [self.index(k) for k in kpoints]
        Y = Y[:, order].real if np.isrealobj(H0_skMM) else Y[:, order]
        G0_H, G0_S = density_matrix_gradients(H0_skMM, S_kMM, Y, weights, n_electrons, width)
        return -self.share * forces, self.share * G0_H, self.share * G0_S


def _density_state(dft) -> tuple:
    """(potential, pseudo density, atomic density matrices) of `dft` as they are now (copies
    of the density arrays, which GPAW updates in place; potentials are replaced whole)."""
    density = dft.density
    return (dft.potential, density.nt_sR.data.copy(),
            {a: D.copy() for a, D in density.D_asii.items()})


def _restore_density_state(dft, state: tuple) -> None:
    """Make a `_density_state` current again."""
    potential, nt_sR, D_asii = state
    dft.potential = potential
    dft.density.nt_sR.data[:] = nt_sR
    for a, D in D_asii.items():
        dft.density.D_asii[a][:] = D
