"""The recursive Green's function of a block-tridiagonal device: transmission in both directions.

For M = E S - H - Sigma_L - Sigma_R in blocks (Sigma_L on the first, Sigma_R on the last),
the left-connected Green's functions g_i = (M_ii - M_{i,i-1} g_{i-1} M_{i-1,i})^-1 give the
corner blocks G_{0,N-1} = -G_{0,N-2} M_{N-2,N-1} g_{N-1} and G_{N-1,0} likewise, one block
at a time, so the cost grows linearly with the number of blocks (no inverse of the whole
device). Transmission T_LR = Tr[Gamma_L G_{0,N-1} Gamma_R G_{0,N-1}^dagger] with
Gamma = i (Sigma - Sigma^dagger); T_RL from G_{N-1,0}. Energies in eV.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["broadening", "recursive_transmission"]


def broadening(sigma: np.ndarray) -> np.ndarray:
    """Gamma = i (Sigma - Sigma^dagger) of a self-energy (eV)."""
    return 1j * (sigma - sigma.conj().T)


def recursive_transmission(diagonal: Sequence[np.ndarray], upper: Sequence[np.ndarray],
                           lower: Sequence[np.ndarray], sigma_left: np.ndarray,
                           sigma_right: np.ndarray) -> tuple[float, float]:
    """(T_LR, T_RL) of a block-tridiagonal device.

    Args:
        diagonal: blocks (E S - H)_{i,i}, i = 0..N-1, without self-energies.
        upper: blocks (E S - H)_{i,i+1}, i = 0..N-2.
        lower: blocks (E S - H)_{i+1,i}, i = 0..N-2.
        sigma_left, sigma_right: retarded self-energies on the first and last block (eV).
    """
    n_blocks = len(diagonal)
    last = n_blocks - 1

    def block(i: int) -> np.ndarray:
        m = diagonal[i] - sigma_left if i == 0 else diagonal[i]
        return m - sigma_right if i == last else m

    g = np.linalg.inv(block(0))
    first_to_i, i_to_first = g, g
    for i in range(1, n_blocks):
        g = np.linalg.inv(block(i) - lower[i - 1] @ g @ upper[i - 1])
        first_to_i = -(first_to_i @ upper[i - 1]) @ g
        i_to_first = -g @ (lower[i - 1] @ i_to_first)
    gamma_left, gamma_right = broadening(sigma_left), broadening(sigma_right)
    t_lr = np.trace(gamma_left @ first_to_i @ gamma_right @ first_to_i.conj().T)
    t_rl = np.trace(gamma_right @ i_to_first @ gamma_left @ i_to_first.conj().T)
    return float(t_lr.real), float(t_rl.real)
