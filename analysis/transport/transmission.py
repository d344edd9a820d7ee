"""T(E) of a two-terminal device at transverse k-points, and the Landauer-Büttiker current.

Electrode self-energies come from sisl's `RecursiveSI` (Lopez-Sancho decimation, with
its broadening eta on the electrodes only); the device is solved at real energies by the
recursive block solver of `analysis.transport.green`. Energies eV, currents A, bias V.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from analysis.transport.device import TwoTerminalDevice
from analysis.transport.green import recursive_transmission
from mlh.errors import MLHError

__all__ = ["Transmission", "transmission", "default_jobs", "landauer_current", "CONDUCTANCE_QUANTUM", "check_bias_window"]

CONDUCTANCE_QUANTUM = 7.748091729863649e-05
"""2 e^2 / h in siemens (spin-degenerate): I [A] = G0 * integral T(E) (f_L - f_R) dE [eV]."""

BOLTZMANN = 8.617333262e-05
"""eV / K."""


@dataclass(frozen=True)
class Transmission:
    """T(E) per transverse k-point in both directions.

    Attributes:
        energies: (n_E,) absolute energies (eV).
        kpoints: (n_k, 3) reduced k-points of the device cell (0 along the axis).
        weights: (n_k,) weights summing to 1.
        left_to_right, right_to_left: (n_k, n_E) transmissions.
    """

    energies: np.ndarray
    kpoints: np.ndarray
    weights: np.ndarray
    left_to_right: np.ndarray
    right_to_left: np.ndarray

    @property
    def average(self) -> np.ndarray:
        """(n_E,) k-averaged T_LR."""
        return self.weights @ self.left_to_right


def _blocks(matrix: sp.csr_matrix, blocks: tuple[np.ndarray, ...]):
    diagonal = [matrix[b][:, b].toarray() for b in blocks]
    upper = [matrix[a][:, b].toarray() for a, b in zip(blocks[:-1], blocks[1:])]
    lower = [matrix[b][:, a].toarray() for a, b in zip(blocks[:-1], blocks[1:])]
    return diagonal, upper, lower


def default_jobs() -> int:
    """Cores this process may use: the default number of energies solved at once."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def transmission(device: TwoTerminalDevice, energies: np.ndarray, kpoints: np.ndarray | None = None,
                 weights: np.ndarray | None = None, eta: float = 1e-4, jobs: int = 1) -> Transmission:
    """T_LR(E, k) and T_RL(E, k) at absolute `energies` (eV) and transverse `kpoints`.

    `kpoints` are reduced coordinates of the device cell (their axis component is set to 0);
    default Γ. `eta` (eV) broadens the electrodes' surface Green's functions only. `jobs`
    energies are solved at once, each by one thread with single-threaded BLAS (blocks of a
    few hundred orbitals gain nothing from threaded BLAS; LAPACK releases the GIL, so the
    threads share the device's blocks instead of copying them).
    """
    from sisl.physics import RecursiveSI
    from threadpoolctl import threadpool_limits

    energies = np.asarray(energies, dtype=float)
    kpoints = np.zeros((1, 3)) if kpoints is None else np.array(kpoints, dtype=float).reshape(-1, 3)
    kpoints[:, device.axis] = 0.0
    weights = np.full(len(kpoints), 1.0 / len(kpoints)) if weights is None else np.asarray(weights, float)
    weights = weights / weights.sum()
    leads = [RecursiveSI(e.hamiltonian, e.semi_infinite, eta=eta) for e in (device.left, device.right)]
    t_lr = np.empty((len(kpoints), len(energies)))
    t_rl = np.empty_like(t_lr)
    for n, k in enumerate(kpoints):
        h_blocks = _blocks(device.hamiltonian.Hk(k, format="csr"), device.blocks)
        s_blocks = _blocks(device.hamiltonian.Sk(k, format="csr"), device.blocks)

        def at(energy: float, k=k, h_blocks=h_blocks, s_blocks=s_blocks) -> tuple[float, float]:
            diagonal, upper, lower = ([energy * s - h for s, h in zip(s_part, h_part)]
                                      for s_part, h_part in zip(s_blocks, h_blocks))
            sigma_left, sigma_right = (lead.self_energy(energy, k=k) for lead in leads)
            return recursive_transmission(diagonal, upper, lower, sigma_left, sigma_right)

        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(jobs) as pool:
            values = list(pool.map(at, energies))
        t_lr[n], t_rl[n] = np.array(values).T
    return Transmission(energies, kpoints, weights, t_lr, t_rl)


def fermi_dirac(energies: np.ndarray, chemical_potential: float, temperature: float) -> np.ndarray:
    """Occupation 1 / (exp((E - mu) / kT) + 1); a step at T = 0 K."""
    if temperature <= 0:
        return (energies < chemical_potential).astype(float)
    return 0.5 * (1.0 - np.tanh((energies - chemical_potential) / (2 * BOLTZMANN * temperature)))


def bias_window(fermi_level: float, bias: float, temperature: float) -> tuple[float, float]:
    """Energies (eV) where f_L - f_R exceeds ~1e-9 of its peak: mu_L,R = E_F +- V/2 widened by 20 kT."""
    tail = 20 * BOLTZMANN * max(temperature, 0.0)
    return fermi_level - abs(bias) / 2 - tail, fermi_level + abs(bias) / 2 + tail


def check_bias_window(energies: np.ndarray, fermi_level: float, biases: np.ndarray, temperature: float) -> None:
    """Raise MLHError unless the energy grid covers every bias window (with its Fermi tails)."""
    for bias in np.atleast_1d(biases):
        lower, upper = bias_window(fermi_level, bias, temperature)
        if lower < energies.min() - 1e-12 or upper > energies.max() + 1e-12:
            raise MLHError(
                f"the energy grid {energies.min() - fermi_level:+.3f}..{energies.max() - fermi_level:+.3f} eV "
                f"(relative to E_F) misses the bias window of {bias:g} V at {temperature:g} K "
                f"({lower - fermi_level:+.3f}..{upper - fermi_level:+.3f} eV)")


def landauer_current(energies: np.ndarray, transmission_values: np.ndarray, fermi_level: float,
                     bias: float, temperature: float) -> float:
    """I = (2e/h) integral T(E) [f(E - mu_L) - f(E - mu_R)] dE in A, mu_L,R = E_F +- V/2 (trapezoid)."""
    check_bias_window(energies, fermi_level, np.array([bias]), temperature)
    window = (fermi_dirac(energies, fermi_level + bias / 2, temperature)
              - fermi_dirac(energies, fermi_level - bias / 2, temperature))
    return float(CONDUCTANCE_QUANTUM * np.trapezoid(transmission_values * window, energies))
