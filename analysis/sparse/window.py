"""Large structures (thousands of atoms) at Γ, sparse only: exact E_F and the states of a
window around it.

Energies in eV. No N × N dense matrix is formed (N orbitals). The tools are

* Sylvester's law of inertia: the number of generalized eigenvalues of (H, S) below σ is
  the number of negative pivots of an LDLᵀ factorization of H - σS ("count at σ";
  `analysis.sparse.factor`, multifrontal, METIS nested dissection of the atom graph);
* shift-invert block Lanczos (`analysis.sparse.shift_invert`): the eigenpairs nearest σ are the
  dominant ones of T = (H - σS)⁻¹S, self-adjoint in the S inner product;

`window_spectrum` gives the exact E_F and every state of a window around it. Lanczos
around a first count point σ (at a cheap E_F estimate) resolves a tentative E_F; count
points a <= σ <= b then bracket E_F + window and the highest filled / lowest empty states,
and between consecutive count points p < q the eigenpairs found must number
count(q) - count(p) — Lanczos at p or q seeks any that are missing, so none is missed.
The electrons below a are 2·count(a) (spin-paired; summed over spin channels otherwise)
and E_F follows from `find_fermi_level` over the listed states: the same E_F as dense
diagonalization, to the eigenvalue accuracy (~1e-9 eV). Cost: about three factorizations
and a few thousand solves (timings: benchmarks/analysis_large.py). DOS and PDOS over the
whole spectrum: analysis.sparse.kpm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.linalg

from analysis.projected import ProjectedSpectrum
from analysis.sparse.factor import LDLFactor
from analysis.sparse.shift_invert import (
    RESIDUAL_TOLERANCE,
    ShiftInvertLanczos,
    SparsePencil,
    rayleigh_quotients,
    sparse_pencil,
)
from analysis.spectrum import mulliken_projections, orbital_channels
from mlh.errors import MLHError
from mlh.record.hamiltonian import HamiltonianRecord
from physics.occupations import (
    fermi_dirac,
    find_fermi_level,
    record_electron_count,
)

__all__ = ["local_fermi_estimate", "window_spectrum"]

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
