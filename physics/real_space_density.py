"""The pseudo valence density n(r) = sum rho phi phi on a real-space grid, with NetCDF and cube output.

Units: lengths in Å, densities in electrons/Å^3 (the cube file, by its convention, in
electrons/Bohr^3). For density matrices rho_s(k) (physics.density_matrix, including the
spin degeneracy) and GPAW's LCAO basis functions phi_mu (the setups' radial splines times
real spherical harmonics, evaluated by GPAW's own BasisFunctions, periodic images
included),

    n_s(r) = sum_k w_k sum_{mu nu} rho_s(k)_{nu mu} Phi^k_mu(r)^* Phi^k_nu(r),
    Phi^k_mu(r) = sum_R exp(+2 pi i k.R) phi_mu(r - tau_mu - R @ cell).

This is GPAW's smooth (pseudo) valence density without the pseudo core density. What holds
exactly (PAW):

    integral n(r) dr = sum_k w_k Tr[rho(k) Theta(k)]            (pseudo_electron_count)
    N = pseudo_electron_count + sum_a sum_ij D^a_ij dO^a_ij      (paw_charges per atom)

with Theta = <phi|phi> the pseudo overlap (S without GPAW's PAW term sum_a P dO P^H) and
D^a = sum_k w_k P^a(k)^H rho(k)^T P^a(k) the PAW atomic density matrices. On a grid the
integral holds up to the grid's quadrature error (and, along non-periodic directions, the
part of the orbitals outside the box); GPAW itself rescales its grid density to the exact
charge in LCAO mode, this module does not (`grid_electron_count` reports the grid value).

The grid is GPAW's for the same settings (spacing h, multiples of 4 points). It is stored
as a periodic grid of N points per lattice vector at r = (i/N1, j/N2, l/N3) @ cell; along
non-periodic directions GPAW's grid has no point on the boundary and the plane i = 0 is
zero, as in GPAW's own cube output.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import xarray as xr
from ase import Atoms
from ase.units import Bohr

from mlh import __version__ as mlh_version
from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.gpaw.overlap import gpaw_setups, wrapped_positions
from mlh.gpaw.record_settings import record_atoms, settings_from_record
from mlh.gpaw.settings import GPAWSettings
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import write_dataset
from physics.density_matrix import DensityMatrices, density_matrices_for_record

__all__ = [
    "PseudoDensity", "pseudo_density", "pseudo_density_for_record", "grid_size",
    "density_dataset", "write_density_netcdf", "write_density_cube",
]


@dataclass(frozen=True, eq=False)
class PseudoDensity:
    """Pseudo valence density of one structure on a periodic real-space grid.

    Attributes:
        density: (n_spins, N1, N2, N3) n_s(r) (electrons/Å^3) at r = (i/N1, j/N2, l/N3) @ cell.
        numbers: (n_atoms,) atomic numbers.
        positions: (n_atoms, 3) positions as GPAW wraps them (Å).
        cell: (3, 3) lattice vectors as rows (Å).
        pbc: (3,) periodic directions.
        grid_electron_count: sum of n over the grid times the volume element (electrons).
        pseudo_electron_count: sum_k w_k Tr[rho Theta], the exact integral of n (electrons).
        paw_charges: (n_atoms,) PAW charge corrections sum_ij D^a_ij dO^a_ij (electrons).
        n_electrons: electrons of the density matrices (= pseudo + PAW, exactly).
    """

    density: np.ndarray
    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    grid_electron_count: float
    pseudo_electron_count: float
    paw_charges: np.ndarray
    n_electrons: float

    @property
    def volume_element(self) -> float:
        """Volume per grid point (Å^3)."""
        return abs(float(np.linalg.det(self.cell))) / int(np.prod(self.density.shape[1:]))

    @property
    def total(self) -> np.ndarray:
        """(N1, N2, N3) density summed over spin channels (electrons/Å^3)."""
        return self.density.sum(axis=0)


def grid_size(cell: np.ndarray, grid_spacing: float) -> tuple[int, int, int]:
    """GPAW's number of grid points per lattice vector for spacing `grid_spacing` (Å)."""
    from gpaw.utilities import h2gpts

    if not grid_spacing > 0:
        raise MLHError(f"the grid spacing must be positive, got {grid_spacing} Å")
    return tuple(int(n) for n in h2gpts(grid_spacing / Bohr, np.asarray(cell) / Bohr, 4))


def pseudo_density(
    atoms: Atoms,
    settings: GPAWSettings,
    dm: DensityMatrices,
    grid_spacing: float | None = None,
    gpts: tuple[int, int, int] | None = None,
) -> PseudoDensity:
    """n(r) = sum rho phi phi of density matrices `dm` with GPAW's basis for `settings`.

    Args:
        atoms: the structure (Å, cell required; positions wrapped as GPAW wraps them).
        settings: basis, setups and xc of the basis (other fields are not used).
        dm: density matrices in GPAW's orbital order (`physics.density_matrix`); their
            k-points must be a full grid or a time-reversal-reduced one.
        grid_spacing: grid spacing (Å); default settings.h (GPAW's own grid).
        gpts: grid points per lattice vector instead of a spacing.

    Raises:
        MLHError: a basis whose orbital count differs from the density matrices', a
            structure without a cell, or a GPAW setup problem.
    """
    from gpaw.core import UGDesc
    from gpaw.lcao.tci import TCIExpansions
    from gpaw.lfc import BasisFunctions
    from gpaw.mpi import serial_comm
    from gpaw.utilities.timing import NullTimer

    cell = atoms.cell.array
    if abs(np.linalg.det(cell)) < 1e-6:
        raise MLHError("the structure needs a cell with a positive volume")
    setups = gpaw_setups(atoms, settings)
    if setups.nao != dm.n_orbitals:
        raise MLHError(f"GPAW's basis has {setups.nao} orbitals; the density matrices "
                       f"have {dm.n_orbitals}")
    pbc = np.asarray(atoms.pbc, bool)
    size = gpts if gpts is not None else grid_size(cell, settings.h if grid_spacing is None
                                                   else grid_spacing)
    if len(size) != 3 or min(size) < 4:
        raise MLHError(f"grid size must be three integers >= 4, got {size}")
    grid = UGDesc(cell=cell / Bohr, pbc=pbc, zerobc=~pbc, size=size)
    relpos = np.linalg.solve(cell.T, wrapped_positions(atoms).T).T

    real = not np.iscomplexobj(dm.rho)
    if real and (dm.n_kpoints != 1 or np.any(dm.kpoints)):
        raise MLHError("real density matrices are only valid at Γ alone")
    dtype = float if real else complex
    kd = None if real else SimpleNamespace(ibzk_qc=dm.kpoints, gamma=False)
    basis = BasisFunctions(grid._gd, [setup.basis_functions_J for setup in setups], kd,
                           dtype=dtype, cut=True)
    try:
        basis.set_positions(relpos)
    except ValueError as err:  # GPAW's GridBoundsError: orbitals reach past a zero boundary
        raise MLHError(f"GPAW cannot place the basis functions on this grid: {err}") from None

    nt_sR = grid.zeros(dm.n_spins)
    for s in range(dm.n_spins):
        for k in range(dm.n_kpoints):
            # GPAW's density matrix is rho^T: rho_GPAW[M, N] = sum f conj(c_M) c_N.
            rho_MM = np.ascontiguousarray(dm.kpoint_weights[k] * dm.rho[s, k].T)
            basis.construct_density(rho_MM, nt_sR.data[s], k)

    # Exact integrals: pseudo overlap Theta(k) and projections P^a(k), as GPAW's LCAO has them.
    kpoints = np.zeros((1, 3)) if real else dm.kpoints
    manytci = TCIExpansions.new_from_setups(setups).get_manytci_calculator(
        setups, grid._gd, relpos, kpoints, dtype, NullTimer())
    O_kMM, _ = manytci.O_qMM_T_qMM(serial_comm, 0, setups.nao, ignore_upper=False)
    P_akMi = manytci.P_aqMi(range(len(setups)))
    pseudo = 0.0
    paw = np.zeros(len(setups))
    for k in range(dm.n_kpoints):
        Theta = O_kMM[k].conj()  # GPAW: S = conj(O) + conj(P) dO P^T
        for s in range(dm.n_spins):
            rho_T = dm.kpoint_weights[k] * dm.rho[s, k].T
            pseudo += float(np.sum(rho_T * Theta).real)
            for a, setup in enumerate(setups):
                P_Mi = P_akMi[a][k]
                D_ii = (P_Mi.conj().T @ rho_T @ P_Mi).real
                paw[a] += float(np.sum(D_ii * setup.dO_ii))

    density = nt_sR.data / Bohr**3
    pad = [(0, 0)] + [(0, 0) if p else (1, 0) for p in pbc]
    density = np.pad(density, pad)
    volume_element = abs(np.linalg.det(cell)) / int(np.prod(size))
    return PseudoDensity(
        density=density,
        numbers=atoms.numbers.copy(),
        positions=wrapped_positions(atoms),
        cell=cell.copy(),
        pbc=pbc.copy(),
        grid_electron_count=float(density.sum() * volume_element),
        pseudo_electron_count=pseudo,
        paw_charges=paw,
        n_electrons=dm.n_electrons,
    )


def pseudo_density_for_record(
    record: HamiltonianRecord,
    dm: DensityMatrices | None = None,
    settings: GPAWSettings | None = None,
    grid_spacing: float | None = None,
    gpts: tuple[int, int, int] | None = None,
) -> PseudoDensity:
    """`pseudo_density` of a record (GPAW-made or predicted, same basis as GPAW's).

    Args:
        record: the record (its structure; and its H when `dm` is None).
        dm: density matrices; default `density_matrices_for_record(record)` (the record's
            SCF k-points, electron count and smearing).
        settings: default from the record's provenance (xc, basis, setups, grid spacing).
        grid_spacing, gpts: as in `pseudo_density`.
    """
    dm = density_matrices_for_record(record) if dm is None else dm
    settings = settings_from_record(record) if settings is None else settings
    return pseudo_density(record_atoms(record), settings, dm, grid_spacing, gpts)


# ------------------------------------------------------------------ output
def _variable(dims, data, long_name: str, units: str) -> xr.Variable:
    return xr.Variable(dims, data, attrs={"long_name": long_name, "units": units})


def density_dataset(result: PseudoDensity, provenance: dict[str, Any] | None = None) -> xr.Dataset:
    """The density as an xarray Dataset (units and long names on every variable).

    Dimensions: spin, grid_a, grid_b, grid_c (grid points along the three lattice
    vectors, coordinates = fractional positions i/N), atom, xyz, lattice_vector.
    `provenance` entries (str/int/float) become `provenance_<key>` attributes.
    """
    from datetime import datetime, timezone

    n1, n2, n3 = result.density.shape[1:]
    variables = {
        "density": _variable(("spin", "grid_a", "grid_b", "grid_c"), result.density,
                             "pseudo valence electron density", "electron/angstrom^3"),
        "numbers": _variable("atom", result.numbers.astype(np.int32), "atomic number", "1"),
        "positions": _variable(("atom", "xyz"), result.positions, "Cartesian position",
                               "angstrom"),
        "cell": _variable(("lattice_vector", "xyz"), result.cell, "lattice vectors (rows)",
                          "angstrom"),
        "pbc": _variable("xyz", result.pbc.astype(np.int8), "periodic direction (0/1)", "1"),
        "paw_charges": _variable("atom", result.paw_charges, "PAW charge correction per atom",
                                 "electron"),
        "grid_electron_count": _variable((), result.grid_electron_count,
                                         "integral of the density on the grid", "electron"),
        "pseudo_electron_count": _variable((), result.pseudo_electron_count,
                                           "exact integral of the density, Tr(rho Theta)",
                                           "electron"),
        "n_electrons": _variable((), result.n_electrons, "valence electrons", "electron"),
    }
    coords = {
        "xyz": ["x", "y", "z"],
        "grid_a": _variable("grid_a", np.arange(n1) / n1, "fractional coordinate along a", "1"),
        "grid_b": _variable("grid_b", np.arange(n2) / n2, "fractional coordinate along b", "1"),
        "grid_c": _variable("grid_c", np.arange(n3) / n3, "fractional coordinate along c", "1"),
    }
    attrs: dict[str, Any] = {
        "description": "n(r) = sum_k w_k sum rho(k) phi phi with GPAW's LCAO basis functions "
                       "(pseudo valence density, no pseudo core density)",
        "creation_library": "mlh",
        "creation_library_version": mlh_version,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    attrs.update({f"provenance_{key}": value for key, value in (provenance or {}).items()})
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def write_density_netcdf(
    result: PseudoDensity, path: str | os.PathLike, provenance: dict[str, Any] | None = None
) -> Path:
    """Write `density_dataset(result)` to NetCDF4 atomically; returns the path."""
    return write_dataset(density_dataset(result, provenance), path)


def write_density_cube(result: PseudoDensity, path: str | os.PathLike, spin: int | None = None) -> Path:
    """Write a Gaussian cube file (electrons/Bohr^3, the cube convention) atomically.

    Args:
        result: the density.
        path: output file (.cube).
        spin: write this spin channel; None writes the sum over channels.

    Raises:
        MLHError: a spin channel the density does not have.
    """
    from ase.io import write

    if spin is not None and not 0 <= spin < result.density.shape[0]:
        raise MLHError(f"spin channel {spin} does not exist: the density has "
                       f"{result.density.shape[0]}")
    data = result.total if spin is None else result.density[spin]
    atoms = Atoms(numbers=result.numbers, positions=result.positions, cell=result.cell,
                  pbc=result.pbc)
    path = Path(path)
    with atomic_output(path) as tmp:
        write(tmp, atoms, format="cube", data=data * Bohr**3)
    return path
