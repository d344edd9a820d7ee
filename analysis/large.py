"""Large structures (thousands of atoms) at Γ, sparse only: exact E_F and window states.

Energies in eV. No N × N dense matrix is formed (N orbitals). The tools are

* Sylvester's law of inertia: the number of generalized eigenvalues of (H, S) below σ is
  the number of negative pivots of an LDLᵀ factorization of H - σS ("count at σ";
  `analysis.sparse_factor`, multifrontal, METIS nested dissection of the atom graph);
* shift-invert block Lanczos (`analysis.shift_invert`): the eigenpairs nearest σ are the
  dominant ones of T = (H - σS)⁻¹S, self-adjoint in the S inner product;
* Chebyshev expansions of S⁻¹H with stochastic traces (kernel polynomial method).

`window_spectrum` gives the exact E_F and every state of a window around it. Lanczos
around a first count point σ (at a cheap E_F estimate) resolves a tentative E_F; count
points a <= σ <= b then bracket E_F + window and the highest filled / lowest empty states,
and between consecutive count points p < q the eigenpairs found must number
count(q) - count(p) — Lanczos at p or q seeks any that are missing, so none is missed.
The electrons below a are 2·count(a) (spin-paired; summed over spin channels otherwise)
and E_F follows from `find_fermi_level` over the listed states: the same E_F as dense
diagonalization, to the eigenvalue accuracy (~1e-9 eV). Cost: about three factorizations
(~15-25 s each at 4,000 WSe2 atoms on 2 cores) and a few thousand solves.

`kpm_pdos` gives DOS and Mulliken PDOS over the whole spectrum with a stated resolution
and stochastic error; the number of moments grows with (spectral width / resolution).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.sparse as sp
import xarray as xr

from analysis._common import provenance_attrs, variable
from analysis.dos import PDOS_UNITS, pdos_skeleton, species_symbols
from analysis.projected import ProjectedSpectrum
from analysis.shift_invert import (
    RESIDUAL_TOLERANCE, ShiftInvertLanczos, SparsePencil, rayleigh_quotients, sparse_pencil,
)
from analysis.sparse_factor import LDLFactor, factorize
from analysis.spectrum import mulliken_projections, orbital_channels
from mlh.errors import MLHError
from mlh.record import HamiltonianRecord
from physics.occupations import (
    fermi_dirac, find_fermi_level, normalised_kpoint_weights, record_electron_count,
)

__all__ = ["local_fermi_estimate", "window_spectrum", "kpm_pdos"]

COUNT_MARGIN = 0.05
"""Count points lie up to this far (eV) beyond the energies they must bracket."""


def _coverage(energies: np.ndarray, converged: np.ndarray, sigma: float) -> float:
    """Radius r around sigma within which every Ritz value has converged."""
    distance = np.abs(energies - sigma)
    open_ = distance[~converged]
    return float(open_.min()) if open_.size else np.inf


@dataclass
class _States:
    """Eigenpairs found so far (all spins) and the exact counts at the count points."""

    n_spins: int
    energies: list[np.ndarray]
    vectors: list[np.ndarray]
    counts: dict[float, tuple[int, ...]] = field(default_factory=dict)

    def add(self, spin: int, energies: np.ndarray, vectors: np.ndarray) -> None:
        self.energies[spin] = np.concatenate([self.energies[spin], energies])
        self.vectors[spin] = np.concatenate([self.vectors[spin], vectors], axis=1)

    def found(self, spin: int, lower: float, upper: float) -> int:
        e = self.energies[spin]
        return int(np.count_nonzero((e >= lower) & (e < upper)))


def _lock_converged(pencil: SparsePencil, spin: int, lanczos: ShiftInvertLanczos, states: _States,
                    keep: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
    """Move the converged Ritz pairs of `lanczos` (those `keep` selects) into `states`."""
    if lanczos.size == 0:
        return
    energies, converged, Y = lanczos.ritz()
    if keep is not None:
        converged &= keep(energies)
    if not converged.any():
        return
    energies, residual, X = rayleigh_quotients(pencil, spin, lanczos.vectors(Y[:, converged]))
    good = residual <= RESIDUAL_TOLERANCE
    states.add(spin, energies[good], X[:, good])


# ------------------------------------------------------------------ E_F search
def _electron_target(record: HamiltonianRecord, n_electrons: float | None, charge: float) -> float:
    placed = record_electron_count(record, n_electrons) - float(charge)
    capacity = 2.0 * record.n_orbitals
    if not 0 < placed < capacity:
        raise MLHError(f"{placed:g} electrons do not fit in {record.n_orbitals} orbitals "
                       f"(capacity {capacity:g})")
    return placed


def _minimum_image_distances(record: HamiltonianRecord, atom: int) -> np.ndarray:
    """Distances (Å) from `atom` to every atom, minimum image along periodic axes."""
    delta = record.positions - record.positions[atom]
    periodic = np.asarray(record.pbc, dtype=bool)
    if periodic.any() and abs(np.linalg.det(record.cell)) > 1e-9:
        fractional = delta @ np.linalg.inv(record.cell)
        fractional[:, periodic] -= np.round(fractional[:, periodic])
        delta = fractional @ record.cell
    return np.linalg.norm(delta, axis=1)


def local_fermi_estimate(record: HamiltonianRecord, pencil: SparsePencil, electrons: float,
                         n_regions: int = 3, radius: float = 12.0) -> float:
    """A cheap E_F estimate (eV) from dense spectra of a few local regions.

    For each region (atoms within `radius` Å of a centre atom) the principal submatrices of
    H and S are diagonalised; the states' Mulliken weights on a stoichiometric core (the
    atoms nearest the centre, species in the proportions of the whole structure) are
    filled with the core's share of the electrons. The median over regions is returned;
    its error is a few tenths of an eV (confinement, core composition).
    """
    numbers = np.asarray(record.numbers)
    species, totals = np.unique(numbers, return_counts=True)
    offsets = record.orbital_offsets
    centres = np.linspace(0, record.n_atoms - 1, n_regions).astype(int)
    estimates = []
    for centre in centres:
        distance = _minimum_image_distances(record, int(centre))
        region = np.flatnonzero(distance < radius)
        core_size = max(1, int(np.count_nonzero(distance < radius / 2)))
        core = []
        for z, total in zip(species, totals):
            wanted = max(1, int(round(core_size * total / record.n_atoms)))
            of_species = region[numbers[region] == z]
            core += of_species[np.argsort(distance[of_species])[:wanted]].tolist()
        orbitals = np.concatenate([np.arange(offsets[a], offsets[a + 1]) for a in region])
        in_core = np.isin(np.repeat(region, record.orbital_counts[region]), core)
        H = pencil.H[0][orbitals][:, orbitals].toarray()
        S = pencil.S[orbitals][:, orbitals].toarray()
        energies, C = scipy.linalg.eigh(H, S)
        weights = np.einsum("ij,ij->j", C[in_core], (S @ C)[in_core])
        core_orbitals = int(in_core.sum())
        core_electrons = electrons * core_orbitals / record.n_orbitals
        weights = np.clip(weights, 0, None)
        weights *= core_orbitals / weights.sum()
        estimates.append(find_fermi_level(energies, 2 * weights, core_electrons, width=0.05))
    return float(np.median(estimates))


def _spread(energies: np.ndarray, lower: float, upper: float) -> float:
    """A point of [lower, upper] far from `energies`: the middle of the widest gap."""
    inside = np.sort(energies[(energies > lower) & (energies < upper)])
    edges = np.concatenate([[lower], inside, [upper]])
    widest = int(np.argmax(np.diff(edges)))
    return float(0.5 * (edges[widest] + edges[widest + 1]))


def _fermi_from(energies: list[np.ndarray], below: float, weight: float, electrons: float,
                width: float) -> float | None:
    """E_F of the listed states (per spin) with `below` electrons under them; None when the
    electrons do not fall inside them."""
    listed = np.concatenate(energies)
    if not below < electrons < below + weight * len(listed):
        return None
    return find_fermi_level(listed, np.full(len(listed), weight), electrons, width, below)


def _needed(energies: np.ndarray, fermi: float, window: tuple[float, float], width: float
            ) -> tuple[float, float]:
    """Energies the listed states must cover: the window, plus the highest mostly filled
    and the lowest mostly empty state (they fix E_F in a gap)."""
    lower, upper = fermi + window[0], fermi + window[1]
    occupation = fermi_dirac(energies, fermi, width)
    filled, empty = energies[occupation > 0.5], energies[occupation <= 0.5]
    if filled.size:
        lower = min(lower, filled.max())
    if empty.size:
        upper = max(upper, empty.min())
    return lower, upper


_MOVE_STATES = 300
"""Move the shift (a new factorization) when E_F lies more than about this many states
beyond what the Lanczos iteration has resolved."""

_MAX_SHIFTS = 8

_MAX_STEP = 3.0
"""Largest move of the shift (eV) between two factorizations while locating E_F."""


def _locate(pencil: SparsePencil, states: _States, sigma: float, electrons: float,
            weight: float, width: float, rng: np.random.Generator, max_lanczos: int
            ) -> tuple[float, float]:
    """A tentative E_F and the count point used: Lanczos around sigma until E_F (with the
    highest filled and lowest empty state) is resolved, moving sigma to the estimated E_F
    when it is far. Found pairs go to `states`."""
    bracket = [-np.inf, np.inf]  # E_F lies between these shifts (eV)
    for _ in range(_MAX_SHIFTS):
        factors, sigma = pencil.factors(sigma)
        counts = tuple(f.n_negative for f in factors)
        states.counts[sigma] = counts
        bracket[0 if weight * sum(counts) < electrons else 1] = sigma
        lanczi = [ShiftInvertLanczos(f, pencil.S, sigma, states.vectors[spin], rng,
                                     max_size=max_lanczos) for spin, f in enumerate(factors)]
        move = None
        while move is None:
            grew = all([lz.extend() and lz.extend() for lz in lanczi])
            ritz = [lz.ritz() for lz in lanczi]
            radius = min(_coverage(e, c, sigma) for e, c, _ in ritz)
            near = [np.concatenate([e[c & (np.abs(e - sigma) < radius)],
                                    known[np.abs(known - sigma) < radius]])
                    for (e, c, _), known in zip(ritz, states.energies)]
            below = weight * sum(n - np.count_nonzero(e < sigma) for n, e in zip(counts, near))
            fermi = _fermi_from(near, below, weight, electrons, width)
            if fermi is not None:
                if abs(fermi - sigma) + COUNT_MARGIN < radius:
                    for spin, lz in enumerate(lanczi):
                        _lock_converged(pencil, spin, lz, states,
                                        lambda e: np.abs(e - sigma) < radius)
                    return fermi, sigma
                if not grew:  # found only at the edge of the largest basis: re-centre there
                    move = fermi
            elif np.isfinite(radius) and sum(len(e) for e in near):
                # E_F beyond the resolved range: estimate how far with the local density.
                n_near = sum(len(e) for e in near)
                upward = electrons >= below + weight * n_near
                missing = (electrons - below - (weight * n_near if upward else 0.0)) / weight
                if abs(missing) > _MOVE_STATES or not grew:
                    edge = sigma + radius if upward else sigma - radius
                    move = edge + missing / (n_near / (2 * radius))
            if not grew and move is None:
                raise MLHError(f"shift-invert Lanczos at {sigma:.4f} eV reached its largest basis "
                               "without resolving E_F; raise max_lanczos")
        for spin, lz in enumerate(lanczi):
            _lock_converged(pencil, spin, lz, states)
        del lanczi, factors
        step = float(np.clip(move - sigma, -_MAX_STEP, _MAX_STEP))
        sigma = sigma + step
        if not bracket[0] < sigma < bracket[1] and np.all(np.isfinite(bracket)):
            sigma = 0.5 * (bracket[0] + bracket[1])
    raise MLHError(f"E_F not located after {_MAX_SHIFTS} shifts")


def _verify(pencil: SparsePencil, states: _States, a: float, b: float,
            fresh: dict[float, list[LDLFactor]], rng: np.random.Generator, max_lanczos: int
            ) -> None:
    """Find every eigenpair in [a, b): between consecutive count points p < q in [a, b] the
    states found must number count(q) - count(p) for every spin; missing ones are sought
    by Lanczos at p or q (factors from `fresh` first, else factorized again)."""
    points = sorted(p for p in states.counts if a <= p <= b)
    for p, q in zip(points[:-1], points[1:]):
        shifts = sorted((p, q), key=lambda x: x not in fresh)
        inside = lambda e: (e >= p) & (e < q)
        for spin in range(states.n_spins):
            expected = states.counts[q][spin] - states.counts[p][spin]
            for attempt in range(5):
                found = states.found(spin, p, q)
                if found == expected:
                    break
                if found > expected:
                    raise MLHError(f"{found} eigenvalues found in [{p:.4f}, {q:.4f}) eV but the "
                                   f"inertia counts give {expected} (spin {spin})")
                if attempt == 4:
                    raise MLHError(f"found {found} of the {expected} eigenvalues in [{p:.4f}, "
                                   f"{q:.4f}) eV (spin {spin}); raise max_lanczos")
                shift = shifts[attempt % 2]
                if shift not in fresh:
                    fresh[shift], _ = pencil.factors(shift)
                lanczos = ShiftInvertLanczos(fresh[shift][spin], pencil.S, shift,
                                             states.vectors[spin], rng, max_size=max_lanczos)
                while lanczos.extend():
                    energies, converged, _ = lanczos.ritz()
                    if found + np.count_nonzero(converged & inside(energies)) >= expected:
                        break
                _lock_converged(pencil, spin, lanczos, states, inside)


def _count_point(pencil: SparsePencil, states: _States, lower: float, upper: float
                 ) -> tuple[float, list[LDLFactor] | None]:
    """A count point in [lower, upper]: an existing one if any, else a new one far from the
    states found (nudged off singular points); its factors when new."""
    existing = [p for p in states.counts if lower <= p <= upper]
    if existing:
        return existing[0], None
    point = _spread(np.concatenate(states.energies), lower, upper)
    factors, used = pencil.factors(point)
    states.counts[used] = tuple(f.n_negative for f in factors)
    return used, factors


def _spectrum(record: HamiltonianRecord, pencil: SparsePencil, states: _States, a: float,
              b: float, fermi: float, electrons: float, weight: float) -> ProjectedSpectrum:
    """The states in [a, b) as a ProjectedSpectrum with Mulliken weights."""
    channel_M, channel_atom, channel_l = orbital_channels(record)
    energies, spins, projections = [], [], []
    for spin in range(states.n_spins):
        inside = (states.energies[spin] >= a) & (states.energies[spin] < b)
        energies.append(states.energies[spin][inside])
        spins.append(np.full(int(inside.sum()), spin))
        projections.append(mulliken_projections(states.vectors[spin][:, inside], pencil.S,
                                                channel_M, len(channel_atom)))
    energies, spins = np.concatenate(energies), np.concatenate(spins)
    order = np.argsort(energies, kind="stable")
    return ProjectedSpectrum(
        energies=energies[order],
        state_weights=np.full(len(order), weight),
        spin=spins[order],
        kpoint=np.zeros(len(order), dtype=np.int64),
        kpoints=np.zeros((1, 3)),
        projections=np.concatenate(projections)[order],
        channel_atom=channel_atom,
        channel_l=channel_l,
        numbers=np.asarray(record.numbers).copy(),
        cell=np.asarray(record.cell, dtype=float).copy(),
        pbc=np.asarray(record.pbc, dtype=bool).copy(),
        fermi_level=float(fermi),
        n_electrons=electrons,
        electrons_below=weight * sum(states.counts[a]),
        method="shift-invert window",
        energy_range=(float(a), float(b)),
    )


def window_spectrum(
    record: HamiltonianRecord,
    n_electrons: float | None = None,
    charge: float = 0.0,
    width: float = 0.01,
    window: tuple[float, float] = (-0.3, 0.5),
    fermi_guess: float | None = None,
    seed: int = 0,
    max_lanczos: int = 2000,
    pencil: SparsePencil | None = None,
) -> ProjectedSpectrum:
    """Exact E_F and the eigenstates of an energy window around it, at Γ, sparse only.

    The same states, Mulliken weights and E_F (to ~1e-9 eV) as `dense_spectrum` at Γ,
    restricted to energy_range. The count points are factorizations of H - σS (about three
    in all when the first estimate is within a few tenths of an eV; each far-off estimate
    costs one more); between them block Lanczos runs until the inertia counts are met.
    Memory: one or two LDLᵀ factors plus the Lanczos basis (~4 GB at 4,000 WSe2 atoms).

    Args:
        record: a record with H and S (any size; meant for thousands of atoms).
        n_electrons: valence electrons of the neutral structure; default
            record.labels.n_electrons.
        charge: net charge (e); n_electrons - charge electrons are placed.
        width: Fermi-Dirac width (eV) that fixes E_F (as `dense_spectrum`).
        window: (lower, upper) eV relative to E_F: every state in E_F + window is listed.
        fermi_guess: a first E_F estimate (eV); default `local_fermi_estimate`.
        seed: random start vectors of the Lanczos iterations.
        max_lanczos: largest Krylov basis of one Lanczos run (memory: 16 N bytes each).
        pencil: a `sparse_pencil(record)` to reuse (its symbolic factorization).

    Returns:
        ProjectedSpectrum, method "shift-invert window", k-point Γ: every state in
        energy_range (a, b), which contains E_F + window and the highest filled and lowest
        empty states; electrons_below = 2·count(a) (or the sum over spin channels);
        state weights 2 (spin-paired) or 1 per spin channel.

    Raises:
        MLHError: overlap-only record, no electron count, an empty window, a spectrum the
            electrons do not fit, or eigenpairs that could not be completed.
    """
    lower_offset, upper_offset = (float(x) for x in window)
    if not (np.isfinite(lower_offset) and np.isfinite(upper_offset)
            and lower_offset < upper_offset):
        raise MLHError(f"the energy window ({lower_offset}, {upper_offset}) eV is empty")
    if not width > 0:
        raise MLHError(f"the Fermi-Dirac width must be positive, got {width} eV")
    electrons = _electron_target(record, n_electrons, charge)
    pencil = pencil if pencil is not None else sparse_pencil(record)
    n_spins = record.n_spins
    weight = 2.0 / n_spins
    rng = np.random.default_rng(seed)
    states = _States(n_spins, [np.zeros(0)] * n_spins,
                     [np.zeros((pencil.n_orbitals, 0))] * n_spins)
    guess = local_fermi_estimate(record, pencil, electrons) if fermi_guess is None else fermi_guess

    # 1. A tentative E_F from Lanczos around a first count point sigma.
    window = (lower_offset, upper_offset)
    fermi, sigma = _locate(pencil, states, guess, electrons, weight, width, rng, max_lanczos)
    # 2. Count points a <= sigma <= b bracketing what E_F needs; every state in [a, b) found.
    a = b = sigma
    for _ in range(_MAX_SHIFTS):
        need_lo, need_hi = _needed(np.concatenate(states.energies), fermi, window, width)
        fresh: dict[float, list[LDLFactor]] = {}
        if need_lo < a:
            a, factors = _count_point(pencil, states, need_lo - COUNT_MARGIN, need_lo)
            fresh = {a: factors} if factors is not None else {}
            _verify(pencil, states, a, b, fresh, rng, max_lanczos)
        if need_hi > b:
            b, factors = _count_point(pencil, states, need_hi, need_hi + COUNT_MARGIN)
            fresh = {b: factors} if factors is not None else {}
            _verify(pencil, states, a, b, fresh, rng, max_lanczos)
        del fresh
        listed = [e[(e >= a) & (e < b)] for e in states.energies]
        below = weight * sum(states.counts[a])
        fermi_listed = _fermi_from(listed, below, weight, electrons, width)
        if fermi_listed is None:  # all listed states filled (or empty): widen that side
            fermi = a - 2 * COUNT_MARGIN if electrons <= below else b + 2 * COUNT_MARGIN
            continue
        fermi = fermi_listed
        need_lo, need_hi = _needed(np.concatenate(listed), fermi, window, width)
        if a <= need_lo and need_hi <= b:
            return _spectrum(record, pencil, states, a, b, fermi, electrons, weight)
    raise MLHError("the window around E_F could not be bracketed by count points")


# ------------------------------------------------------------ kernel polynomial PDOS
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
