"""Kernel-polynomial (KPM) PDOS of large structures at Γ, sparse only: Chebyshev moments of
the S-orthonormalised pencil with Jackson damping, per (species, l) channel (eV)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.sparse as sp
import xarray as xr

from analysis._common import provenance_attrs, variable
from analysis.dos import PDOS_UNITS, pdos_skeleton, species_symbols
from analysis.sparse.factor import factorize
from analysis.sparse.shift_invert import SparsePencil, sparse_pencil
from analysis.spectrum import orbital_channels
from mlh.errors import MLHError
from mlh.record.hamiltonian import HamiltonianRecord

__all__ = ["kpm_pdos"]


KPM_TRUNCATION = 4.5
"""Default moments: KPM_TRUNCATION x (spectral half-width / sigma). The Chebyshev
coefficients of the Gaussian then fall to exp(-4.5²/2) ≈ 4e-5 of the first one."""

SPECTRAL_MARGIN = 0.02
"""Spectral bounds from Lanczos are widened by this fraction of the width on each side."""


def _spectral_bounds(pencil: SparsePencil, solve_S: Callable[[np.ndarray], np.ndarray],
                     rng: np.random.Generator, steps: int = 60) -> tuple[float, float]:
    """Bounds (eV) of every generalized eigenvalue: Lanczos on S⁻¹H (S inner product),
    extreme Ritz values widened by their residuals and SPECTRAL_MARGIN."""
    lower, upper = np.inf, -np.inf
    n = pencil.n_orbitals
    steps = min(steps, n)
    for H in pencil.H:
        v = rng.standard_normal(n)
        v /= np.sqrt(v @ (pencil.S @ v))
        previous, beta = np.zeros(n), 0.0
        alphas, betas = [], []
        for _ in range(steps):
            Hv = H @ v
            alpha = float(v @ Hv)
            w = solve_S(Hv) - alpha * v - beta * previous
            alphas.append(alpha)
            beta = float(np.sqrt(max(w @ (pencil.S @ w), 0.0)))
            betas.append(beta)
            if beta <= 1e-10 * max(1.0, abs(alpha)):
                break
            previous, v = v, w / beta
        theta, Y = scipy.linalg.eigh_tridiagonal(np.array(alphas), np.array(betas[:-1]))
        residual = abs(betas[-1]) * np.abs(Y[-1])
        lower = min(lower, theta[0] - residual[0])
        upper = max(upper, theta[-1] + residual[-1])
    margin = SPECTRAL_MARGIN * (upper - lower)
    return lower - margin, upper + margin


def _channel_groups(record: HamiltonianRecord) -> tuple[sp.csr_matrix, list[str], int]:
    """(n_species·n_l, N) indicator of (species, l) for every orbital, the species symbols
    (by atomic number) and n_l."""
    channel_M, channel_atom, channel_l = orbital_channels(record)
    numbers = np.asarray(record.numbers)
    species = np.unique(numbers)
    n_l = int(channel_l.max(initial=0)) + 1
    species_of_channel = np.searchsorted(species, numbers[channel_atom])
    group = (species_of_channel * n_l + channel_l)[channel_M]
    n = len(channel_M)
    indicator = sp.csr_matrix((np.ones(n), (group, np.arange(n))), shape=(len(species) * n_l, n))
    return indicator, species_symbols(numbers), n_l


def _gaussian_curves(weights: np.ndarray, energies: np.ndarray, grid: np.ndarray,
                     sigma: float) -> np.ndarray:
    """(..., n_grid) sum_k weights[..., k] g(grid - energies[k]), Gaussian of std sigma."""
    near = (energies > grid.min() - 10 * sigma) & (energies < grid.max() + 10 * sigma)
    weights, energies = weights[..., near], energies[near]
    out = np.zeros(weights.shape[:-1] + (len(grid),))
    chunk = max(1, (1 << 22) // len(grid))
    norm = 1.0 / (sigma * np.sqrt(2 * np.pi))
    for start in range(0, len(energies), chunk):
        block = slice(start, start + chunk)
        gauss = norm * np.exp(-0.5 * ((grid[None, :] - energies[block, None]) / sigma) ** 2)
        out += weights[..., block] @ gauss
    return out


def kpm_pdos(
    record: HamiltonianRecord,
    energies: np.ndarray,
    fermi_level: float,
    sigma: float = 0.05,
    n_moments: int | None = None,
    n_vectors: int = 8,
    seed: int = 0,
    pencil: SparsePencil | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """DOS and Mulliken PDOS (species; species and l) over the whole spectrum by the kernel
    polynomial method, at Γ, sparse only.

    With M = S⁻¹H (spectrum scaled into [-1, 1] as M̃ = (M - c)/h), Mulliken weights sum
    to traces, Tr[P_g f(M)] = sum_n f(eps_n) p_n(g) for the orbital projector P_g of group
    g (since f(M) = C f(eps) Cᵀ S). The Chebyshev moments mu_k^g = Tr[P_g T_k(M̃)] are
    estimated with Rademacher vectors r (mu_k^g ≈ mean_r (P_g r)ᵀ T_k(M̃) r, one S solve
    and one H product per moment), and the DOS is their expansion convolved with a
    Gaussian of standard deviation sigma — the same smearing as `pdos_dataset`, with no
    other kernel broadening while n_moments >= 4.5 h / sigma.

    Args:
        record: a record with H and S.
        energies: (n_energy,) grid relative to E_F (eV).
        fermi_level: E_F (eV), e.g. from `window_spectrum`.
        sigma: Gaussian standard deviation (eV); the resolution.
        n_moments: Chebyshev moments; default KPM_TRUNCATION h / sigma (h: spectral
            half-width). Fewer moments broaden further (a Jackson kernel then damps the
            truncation; the attrs state the resulting resolution).
        n_vectors: random vectors per spin channel; the stochastic error falls as
            1/sqrt(n_vectors · N).
        seed: random vectors.
        pencil: a `sparse_pencil(record)` to reuse.
        provenance: extra attributes, stored as `provenance_<key>`.

    Returns:
        Dataset like `pdos_dataset` (`dos`, `pdos_species`, `pdos_species_l`, states/eV
        counting spin degeneracy, energy relative to E_F) plus `*_stderr`: the standard
        error of each curve over the random vectors. attrs: sigma, kernel, resolution,
        n_moments, n_vectors, spectral bounds, stochastic error summary and
        truncation_error (states/eV; compare deviations with
        sqrt(stderr² + truncation_error²)).

    Raises:
        MLHError: bad grid, sigma or counts, overlap-only record, S not positive definite.
    """
    grid = np.asarray(energies, dtype=float)
    if grid.ndim != 1 or grid.size == 0 or not np.isfinite(grid).all():
        raise MLHError("the energy grid must be a non-empty 1D array of finite energies")
    if not sigma > 0:
        raise MLHError(f"sigma must be positive, got {sigma} eV")
    if n_vectors < 2:
        raise MLHError(f"n_vectors must be at least 2 (for an error estimate), got {n_vectors}")
    if not np.isfinite(fermi_level):
        raise MLHError(f"the Fermi level must be finite, got {fermi_level}")
    pencil = pencil if pencil is not None else sparse_pencil(record)
    S_factor = factorize(pencil.symbolic, pencil.S.data)
    if S_factor.n_negative:
        raise MLHError(f"S is not positive definite ({S_factor.n_negative} negative eigenvalues)")
    rng = np.random.default_rng(seed)
    lower, upper = _spectral_bounds(pencil, S_factor.solve, rng)
    centre, half = 0.5 * (upper + lower), 0.5 * (upper - lower)
    default_moments = int(np.ceil(KPM_TRUNCATION * half / sigma))
    n_moments = default_moments if n_moments is None else int(n_moments)
    if n_moments < 2:
        raise MLHError(f"n_moments must be at least 2, got {n_moments}")
    groups, symbols, n_l = _channel_groups(record)

    moments = np.zeros((n_moments, groups.shape[0], n_vectors))
    weight = 2.0 / len(pencil.H)
    for H in pencil.H:
        r = rng.choice([-1.0, 1.0], size=(pencil.n_orbitals, n_vectors))
        previous, current = r, (S_factor.solve(H @ r) - centre * r) / half
        moments[0] += weight * (groups @ (r * previous))
        moments[1] += weight * (groups @ (r * current))
        for k in range(2, n_moments):  # T_k+1 = 2 M̃ T_k - T_k-1
            following = 2 * (S_factor.solve(H @ current) - centre * current) / half - previous
            previous, current = current, following
            moments[k] += weight * (groups @ (r * current))
    del S_factor
    total = np.abs(moments.sum(axis=1).mean(axis=1))
    if total.max() > 1.5 * total[0]:
        raise MLHError("the Chebyshev moments grow: the spectral bounds missed an eigenvalue")

    damping = np.ones(n_moments) if n_moments >= default_moments else _jackson(n_moments)
    points = 4 * n_moments
    theta = np.pi * (np.arange(points) + 0.5) / points
    shifted = centre + half * np.cos(theta) - fermi_level
    weights = scipy.fft.dct(moments * damping[:, None, None], type=3, axis=0, n=points) / points
    curves = _gaussian_curves(np.moveaxis(weights, 0, -1), shifted, grid, sigma)
    # The last tenth of the moments bounds what the truncated ones would add.
    tail = moments.sum(axis=(1, 2)) * damping / n_vectors
    tail[: int(0.9 * n_moments)] = 0.0
    truncation = np.abs(_gaussian_curves(scipy.fft.dct(tail, type=3, n=points) / points,
                                         shifted, grid, sigma)).max()
    return _kpm_dataset(curves, grid, symbols, n_l, fermi_level, sigma, n_moments,
                        default_moments, (lower, upper), float(truncation), seed, provenance)


def _jackson(n_moments: int) -> np.ndarray:
    """Jackson kernel factors g_k (Weisse et al., Rev. Mod. Phys. 78, 275, eq. 71)."""
    k = np.arange(n_moments)
    q = np.pi / (n_moments + 1)
    return ((n_moments - k + 1) * np.cos(q * k) + np.sin(q * k) / np.tan(q)) / (n_moments + 1)


def _kpm_dataset(curves: np.ndarray, grid: np.ndarray, symbols: list[str], n_l: int,
                 fermi_level: float, sigma: float, n_moments: int, default_moments: int,
                 bounds: tuple[float, float], truncation: float, seed: int,
                 provenance: Mapping[str, Any] | None) -> xr.Dataset:
    """The KPM curves (group, vector, energy) as a Dataset laid out like `pdos_dataset`."""
    n_vectors = curves.shape[1]
    per_vector = curves.reshape(len(symbols), n_l, n_vectors, len(grid))
    error = lambda c: c.std(axis=-2, ddof=1) / np.sqrt(n_vectors)
    species_l, species_l_err = per_vector.mean(axis=2), error(per_vector)
    dos_err = error(per_vector.sum(axis=(0, 1)))
    species_err = error(per_vector.sum(axis=1))
    half_width = 0.5 * (bounds[1] - bounds[0])
    kernel_width = np.pi * half_width / n_moments if n_moments < default_moments else 0.0
    resolution = float(np.hypot(sigma, kernel_width))
    data, coords, attrs = pdos_skeleton(species_l, grid, symbols, fermi_level, sigma,
                                        "kernel polynomial")
    units = PDOS_UNITS
    data.update({
        "dos_stderr": variable("energy", dos_err, "standard error of dos (random vectors)", units),
        "pdos_species_stderr": variable(("species", "energy"), species_err,
                                        "standard error of pdos_species", units),
        "pdos_species_l_stderr": variable(("species", "l", "energy"), species_l_err,
                                          "standard error of pdos_species_l", units),
    })
    dos = data["dos"].values
    attrs.update({
        "kernel": "Gaussian (exact Chebyshev expansion)" if kernel_width == 0.0
                  else "Gaussian and Jackson (too few moments for sigma alone)",
        "resolution": resolution,
        "resolution_note": "standard deviation (eV) of the total broadening",
        "n_moments": int(n_moments),
        "n_vectors": int(n_vectors),
        "random_vectors": f"Rademacher, seed {seed}, per spin channel",
        "spectral_lower": float(bounds[0]),
        "spectral_upper": float(bounds[1]),
        "stochastic_error_max": float(dos_err.max()),
        "stochastic_error_relative": float(np.sqrt(np.mean(dos_err**2)) /
                                           max(np.sqrt(np.mean(dos**2)), 1e-300)),
        "stochastic_error_note": "standard error over random vectors, states/eV; "
                                 "relative: rms error / rms dos",
        "truncation_error": truncation,
        "truncation_error_note": "largest contribution of the last tenth of the moments to "
                                 "the dos, states/eV: an upper estimate of the truncation error",
        **provenance_attrs(provenance),
    })
    return xr.Dataset(data, coords=coords, attrs=attrs)
