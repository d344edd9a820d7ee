"""GPAW LCAO reference records: SCF (H, S, labels; optionally H0), overlap only (S, no SCF)
or baseline (S and the zeroth-step H0, no SCF).

This is the GPAW boundary of mlh: Hartree and Bohr are converted to eV and Å here
and nowhere else. H(R) and S(R) for every image pair in range are obtained exactly
from Bloch matrices on an alias-free k grid (see mlh.record.realspace), so cells smaller
than twice the interaction range (primitive crystals, small supercells) work.

Ghost atoms (basis functions, no potential) are atoms whose `atoms.arrays["ghost"]`
is True; they are passed to GPAW as setups={index: "ghost"}.
"""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import numpy as np
from ase import Atoms
from ase.units import Bohr

from mlh import __version__ as mlh_version
from mlh.errors import MLHError
from mlh.gpaw.settings import GPAWSettings
from mlh.gpaw.states import first_step_mix, install_density, kpoint_index
from mlh.record.basis import Basis, SpeciesBasis
from mlh.record.hamiltonian import HamiltonianRecord, Labels
from mlh.record.realspace import alias_free_grid, blocks_from_bloch, image_pairs, unfold_time_reversal

__all__ = [
    "reference_record", "check_elements", "ghost_mask", "drop_negligible_pairs",
    "gpaw_parameters", "gpaw_setups", "wrapped_positions", "bloch_matrices",
    "basis_from_setups", "projector_reach",
]

# Pairs whose H (eV) and S blocks are all below this are not stored: they lie between the
# two-centre range and the PAW three-centre range but touch no common projector.
BLOCK_TOLERANCE = 1e-9
# The back-transformed blocks must be real to this (eV); larger means aliasing.
IMAG_TOLERANCE = 1e-6


def ghost_mask(atoms: Atoms) -> np.ndarray:
    """(n_atoms,) True for ghost atoms (`atoms.arrays["ghost"]`), all False if absent."""
    if "ghost" in atoms.arrays:
        return np.asarray(atoms.arrays["ghost"], dtype=bool)
    return np.zeros(len(atoms), dtype=bool)


def gpaw_parameters(atoms: Atoms, settings: GPAWSettings, kpts: dict | tuple) -> dict[str, Any]:
    """Keyword arguments for GPAW(...) from the settings; ghost atoms get the "ghost" setup."""
    setups: dict[Any, str] = dict(settings.setups)
    for index in np.flatnonzero(ghost_mask(atoms)):
        setups[int(index)] = "ghost"
    params: dict[str, Any] = dict(
        mode="lcao",
        xc=settings.xc,
        basis=settings.basis,
        h=settings.h,
        kpts=kpts,
        setups=setups,
        occupations={"name": "fermi-dirac", "width": settings.smearing_width},
        convergence={"density": settings.density_convergence},
        maxiter=settings.maxiter,
        spinpol=settings.spinpol,
    )
    return params


def gpaw_setups(atoms: Atoms, settings: GPAWSettings):
    """GPAW Setups for `atoms` as a GPAW LCAO calculation with `settings` creates them.

    Ghost atoms (`atoms.arrays["ghost"]`) get the "ghost" setup, as in `reference_record`.
    No grids, densities or SCF are made.
    """
    from gpaw.dft import Parameters
    from gpaw.mpi import serial_comm
    from gpaw.setup import Setups

    params = Parameters(**gpaw_parameters(atoms, settings, (1, 1, 1)))
    xc = params.xc.functional(collinear=True, atoms=atoms)
    try:
        return Setups(atoms.numbers, params.setups, params.basis, xc, world=serial_comm)
    except (FileNotFoundError, RuntimeError, KeyError, ValueError) as err:
        raise MLHError(f"GPAW could not create setups for this structure: {_first_line(err)}") from None


def wrapped_positions(atoms: Atoms) -> np.ndarray:
    """(n_atoms, 3) positions wrapped into the cell exactly as GPAW wraps them (Å)."""
    relpos = atoms.get_scaled_positions()
    relpos %= 1
    relpos %= 1  # as gpaw.new.builder: twice, for round-off at 1 - eps
    return relpos @ atoms.cell.array


def basis_from_setups(setups, numbers: np.ndarray, ghost: np.ndarray, name: str) -> Basis:
    species: dict[int, SpeciesBasis] = {}
    for setup, z, is_ghost in zip(setups, numbers, ghost):
        entry = SpeciesBasis(
            number=int(z),
            ls=tuple(int(bf.l) for bf in setup.basis.bf_j),
            rcuts=tuple(float(bf.rc) * Bohr for bf in setup.basis.bf_j),
            labels=tuple(str(bf.type) for bf in setup.basis.bf_j),
        )
        known = species.setdefault(int(z), entry)
        if known.ls != entry.ls:
            kind = "ghost" if is_ghost else "regular"
            raise MLHError(f"Z={z}: a {kind} atom has basis {entry.ls}, another has {known.ls}")
    return Basis(name=name, species=tuple(species[z] for z in sorted(species)))


def projector_reach(setups) -> float:
    """Largest PAW projector cutoff among the setups (Å)."""
    return max((pt.get_cutoff() * Bohr for s in setups for pt in s.pt_j), default=0.0)


def _labels(calc, atoms: Atoms, settings: GPAWSettings) -> Labels:
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces() if settings.forces else None
    kpoints = calc.get_ibz_k_points()
    nspins = calc.get_number_of_spins()
    eigenvalues = np.array(
        [[calc.get_eigenvalues(kpt=k, spin=s) for k in range(len(kpoints))] for s in range(nspins)]
    )
    return Labels(
        energy=float(energy),
        free_energy=float(calc.get_property("free_energy", atoms)),
        forces=None if forces is None else np.asarray(forces, float),
        fermi_level=float(calc.get_fermi_level()),
        n_electrons=float(calc.get_number_of_electrons()),
        kpoints=np.asarray(kpoints, float),
        kpoint_weights=np.asarray(calc.get_k_point_weights(), float),
        eigenvalues=eigenvalues,
    )


def bloch_matrices(dft, with_hamiltonian: bool = True, potential=None):
    """H_skMM (eV; None unless `with_hamiltonian`), S_kMM and reduced IBZ k-points of `dft`'s
    k-points, H of `potential` (default `dft`'s own; any potential on the same grid and atoms)."""
    from ase.units import Ha

    ibzwfs = dft.ibzwfs
    n_k = len(ibzwfs.ibz)
    n_M = dft.scf_loop.hamiltonian.basis.Mmax
    S_kMM = np.zeros((n_k, n_M, n_M), complex)
    H_skMM = np.zeros((ibzwfs.nspins, n_k, n_M, n_M), complex) if with_hamiltonian else None
    if with_hamiltonian:
        matcalc = dft.scf_loop.hamiltonian.create_hamiltonian_matrix_calculator(
            dft.potential if potential is None else potential)
    for wfs in ibzwfs:
        S_kMM[wfs.k] = wfs.S_MM.data
        if with_hamiltonian:
            H_skMM[wfs.spin, wfs.k] = matcalc.calculate_matrix(wfs).data * Ha
    return H_skMM, S_kMM, np.asarray(ibzwfs.ibz.kpt_kc, float)


def reference_record(
    atoms: Atoms, settings: GPAWSettings, log: io.TextIOBase | str | None = None,
    block_tolerance: float | None = BLOCK_TOLERANCE,
) -> HamiltonianRecord:
    """Run GPAW on `atoms` and return its Hamiltonian record.

    settings.task == "scf": SCF with the settings' k grid, then a fixed-density pass on
    the alias-free grid for H(R) (skipped when the grid is Γ only and so was the SCF).
    settings.task == "overlap": S(R) only, no SCF (basis and PAW overlap corrections).
    settings.task == "baseline": S(R) and the zeroth-step H0(R), no SCF.
    settings.baseline: with "scf", H0(R) is stored beside H(R) (one more initialisation).
    H0 is GPAW's Kohn-Sham H at its initial density (superposed neutral atoms), through the
    same matrix calculator and alias-free grid as H. With settings.first_step_share s > 0
    the stored baseline is B = H0 + s (H[n0] - H0) instead, n0 the density of H0's occupied
    states on the SCF k grid (GPAW's first SCF step, linearly mixed). Pairs in reach whose values are all
    below `block_tolerance` are dropped (None keeps every pair in reach).

    Raises:
        MLHError: unknown element/basis, or SCF failure.
    """
    from gpaw import KohnShamConvergenceError
    from gpaw import __version__ as gpaw_version
    from gpaw.new.ase_interface import GPAW

    atoms = atoms.copy()
    ghost = ghost_mask(atoms)
    scf_kpts = settings.scf_kpts(atoms.cell.array, atoms.pbc)
    params = gpaw_parameters(atoms, settings, scf_kpts)
    symmetry = {"point_group": False, "time_reversal": True}

    try:
        if settings.task == "scf":
            calc = GPAW(**params, symmetry=symmetry, txt=log)
            atoms.calc = calc
            labels = _labels(calc, atoms, settings)
            # GPAW wraps atoms into the cell; lattice shifts R refer to its wrapped positions.
            atoms.positions = np.asarray(calc.dft.relpos_ac) @ atoms.cell.array
            setups = calc.dft.setups
        else:
            setups = gpaw_setups(atoms, settings)  # no grids or densities: only the reach
            atoms.positions = wrapped_positions(atoms)
            labels = Labels(n_electrons=float(setups.nvalence))
    except KohnShamConvergenceError as err:
        raise MLHError(f"SCF did not converge in {settings.maxiter} iterations: {err}") from None
    except (FileNotFoundError, RuntimeError, KeyError, ValueError) as err:
        raise MLHError(f"GPAW could not set up this structure: {_first_line(err)}") from None

    basis = basis_from_setups(setups, atoms.numbers, ghost, settings.basis)
    reach = basis.rcut_per_atom(atoms.numbers) + projector_reach(setups)
    pair_i, pair_j, pair_shift = image_pairs(atoms.positions, atoms.cell.array, atoms.pbc, reach)
    grid = alias_free_grid(pair_shift, atoms.pbc)
    grid_kpts = {"size": tuple(int(n) for n in grid), "gamma": True}

    def initial_dft(kpts):
        """GPAW at its initial density with these k-points (no SCF, no eigensolver)."""
        from gpaw.new.calculation import DFT

        try:
            return DFT(atoms, **{**params, "kpts": kpts}, symmetry=symmetry, txt=None,
                       converge=False)
        except (FileNotFoundError, RuntimeError, KeyError, ValueError) as err:
            raise MLHError(f"GPAW could not set up this structure: {_first_line(err)}") from None

    def initial_on_grid():
        """GPAW at its initial density with the alias-free k-points."""
        return initial_dft(grid_kpts)

    def baseline_on(initial) -> tuple[np.ndarray, np.ndarray]:
        """H0(k) (eV) of GPAW at its initial density `initial`, or the first-step B(k) of
        `settings.first_step_share` s: B = H0 + s (H[n0] - H0), n0 the density of the
        occupied states of H0 on the SCF k grid; and `initial`'s reduced k-points."""
        H0_skMM, _, kpoints = bloch_matrices(initial)
        if not settings.first_step_share:
            return H0_skMM, kpoints
        n0_dft = initial_dft(params["kpts"])
        H0_n0, _, n0_kpoints = bloch_matrices(n0_dft)
        install_density(n0_dft, lambda k, spin: H0_n0[spin, kpoint_index(n0_kpoints, k)])
        H1_skMM = bloch_matrices(initial, potential=n0_dft.potential)[0]
        return first_step_mix(H0_skMM, H1_skMM, settings.first_step_share), kpoints

    H0_skMM = None
    if settings.task == "scf":
        # H(k) of the converged potential on the alias-free grid: the potential is the SCF's
        # (fixed density), only the basis' k-points change, so no eigenstates are solved there.
        gamma_only = tuple(grid) == (1, 1, 1) and scf_kpts == (1, 1, 1)
        on_grid = calc.dft if gamma_only else initial_on_grid()
        H_skMM, S_kMM, ibz_kpoints = bloch_matrices(on_grid, potential=calc.dft.potential)
        if settings.baseline:
            H0_skMM, initial_kpoints = baseline_on(initial_on_grid() if gamma_only else on_grid)
            if not np.allclose(initial_kpoints, ibz_kpoints):
                raise MLHError("GPAW's initial-density k-points differ from the SCF's; this is a bug")
    else:
        initial = initial_on_grid()
        H_skMM, S_kMM, ibz_kpoints = bloch_matrices(initial, with_hamiltonian=settings.task == "scf")
        if settings.task == "baseline":
            H0_skMM = baseline_on(initial)[0]

    orbital_counts = basis.orbital_counts(atoms.numbers)

    def real_space(bloch_kMM: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pair and on-site blocks of Bloch matrices on the IBZ of the alias-free grid."""
        full = unfold_time_reversal(bloch_kMM, ibz_kpoints, grid)
        pair, onsite, imaginary = blocks_from_bloch(full, grid, pair_i, pair_j, pair_shift,
                                                    orbital_counts)
        if imaginary > IMAG_TOLERANCE:
            raise MLHError(
                f"H(R) is not real (max imaginary part {imaginary:.2e}): k grid "
                f"{tuple(grid)} aliases; this is a bug, please report it"
            )
        return pair, onsite

    S_pair, S_onsite = real_space(S_kMM)
    H_pair, H_onsite = (None, None) if H_skMM is None else real_space(H_skMM)
    H0_pair, H0_onsite = (None, None) if H0_skMM is None else real_space(H0_skMM)
    baseline = {} if H0_skMM is None else {"baseline": (
        f"gpaw first SCF step from its initial density, linear mixing share {settings.first_step_share}"
        if settings.first_step_share else "gpaw initial density (superposed neutral atoms), same settings")}

    record = HamiltonianRecord(
        numbers=atoms.numbers.copy(),
        positions=atoms.positions.copy(),
        cell=atoms.cell.array.copy(),
        pbc=atoms.pbc.copy(),
        ghost=ghost,
        basis=basis,
        pair_i=pair_i,
        pair_j=pair_j,
        pair_shift=pair_shift,
        S_pair=S_pair,
        S_onsite=S_onsite,
        H_pair=H_pair,
        H_onsite=H_onsite,
        H0_pair=H0_pair,
        H0_onsite=H0_onsite,
        labels=labels,
        provenance={
            **settings.provenance(),
            **baseline,
            "code": "gpaw",
            "code_version": gpaw_version,
            "mode": "lcao",
            "scf_kpts": "x".join(map(str, scf_kpts)),
            "realspace_kpts": "x".join(map(str, grid)),
            "pair_reach_angstrom": "max basis rc + max PAW projector rc per atom",
            "block_tolerance": 0.0 if block_tolerance is None else block_tolerance,
            "creation_library": "mlh",
            "creation_library_version": mlh_version,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    return record if block_tolerance is None else drop_negligible_pairs(record, block_tolerance)


def drop_negligible_pairs(record: HamiltonianRecord, tolerance: float) -> HamiltonianRecord:
    """The record without pairs whose |H|, |H0| and |S| values are all below `tolerance`."""
    starts = record.pair_value_offsets[:-1]
    if record.n_pairs == 0:
        return record
    magnitude = np.abs(record.S_pair)
    for H in (record.H_pair, record.H0_pair):
        if H is not None:
            magnitude = np.maximum(magnitude, np.abs(H).max(axis=0))
    keep = np.maximum.reduceat(magnitude, starts) >= tolerance
    value_keep = np.repeat(keep, np.diff(record.pair_value_offsets))

    return replace(
        record,
        pair_i=record.pair_i[keep],
        pair_j=record.pair_j[keep],
        pair_shift=record.pair_shift[keep],
        S_pair=record.S_pair[value_keep],
        H_pair=None if record.H_pair is None else record.H_pair[:, value_keep],
        H0_pair=None if record.H0_pair is None else record.H0_pair[:, value_keep],
    )


def check_elements(symbols: set[str], settings: GPAWSettings) -> None:
    """Raise MLHError if GPAW has no PAW setup or basis for one of `symbols`."""
    from gpaw.new.calculation import DFT

    for symbol in sorted(symbols):
        atom = Atoms(symbol, cell=[6.0, 6.0, 6.0], positions=[[3.0, 3.0, 3.0]], pbc=True)
        try:
            DFT(atom, **gpaw_parameters(atom, settings, (1, 1, 1)), txt=None, converge=False)
        except (FileNotFoundError, RuntimeError, KeyError) as err:
            raise MLHError(
                f"element {symbol}: no PAW setup or basis {settings.basis!r} in gpaw-data "
                f"({_first_line(err)})"
            ) from None


def _first_line(err: Exception) -> str:
    """GPAW's messages carry paragraphs of install help; keep the first line."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
