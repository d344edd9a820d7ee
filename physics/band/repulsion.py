"""Short-range repulsion / double-counting term of the band-energy route: a fitted pair potential.

The band free energy A_band of a Hamiltonian misses the double-counting terms of DFT
(Hartree, xc, ion-ion). As in tight binding, the rest is modelled by

    E_rep(R) = sum_a e_{Z_a} + sum_{pairs i<j} phi_{Z_i Z_j}(r_ij),
    phi_AB(r) = sum_n c_{AB,n} (1 - r / r_c)^{p_n}   for r < r_c, 0 beyond,

(pairs over all periodic images, each unordered pair once), linear in the coefficients
c (eV) and the one-body energies e_Z (eV); powers p_n >= 2 make phi continuously
differentiable at the cutoff (>= 3: twice). `fit_repulsion` finds them by regularised
linear least squares from target energies and forces (e.g. E_DFT - A_band and F_DFT -
F_band, physics.band.repulsion_fit.fit_repulsion_to_records); `write_repulsion` and
`read_repulsion` store them as a small JSON file beside a model.

The energy is a jax.numpy function of the positions for a fixed pair topology (numpy,
with a skin), so forces come from jax.grad. Units: Å and eV. Needs float64 (run inside
`jax.enable_x64(True)` or after `jax.config.update("jax_enable_x64", True)`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.model.graph import neighbour_pairs
from mlh.record.hamiltonian import canonical_pair_mask
from physics._jax import SkinnedTopology, register_pytree, require_x64

__all__ = [
    "FORMAT_VERSION", "Repulsion", "RepulsionTopology", "FitReport", "repulsion_topology",
    "repulsion_features", "repulsion_energy", "repulsion_energy_and_forces", "fit_repulsion",
    "write_repulsion", "read_repulsion", "DEFAULT_CUTOFF", "DEFAULT_POWERS",
]

FORMAT_VERSION = "1"
DEFAULT_CUTOFF = 5.0
"""Cutoff r_c of the pair potential (Å)."""
DEFAULT_POWERS = (3, 4, 5, 6)
"""Exponents p_n of the basis (1 - r / r_c)^p_n."""


def _pair_types(n_species: int) -> np.ndarray:
    """(S, S) symmetric table of the unordered species-pair index (a <= b, row-major)."""
    table = np.zeros((n_species, n_species), np.int64)
    n = 0
    for a in range(n_species):
        for b in range(a, n_species):
            table[a, b] = table[b, a] = n
            n += 1
    return table


@dataclass(frozen=True)
class Repulsion:
    """A fitted repulsion E_rep (module docstring).

    Attributes:
        numbers: (S,) atomic numbers of the species, ascending.
        cutoff: r_c (Å).
        powers: (n_powers,) exponents p_n (each >= 2).
        pair_coefficients: (S (S + 1) / 2, n_powers) c_{AB,n} (eV), species pairs (a <= b)
            row-major over the species indices.
        atom_energies: (S,) one-body energies e_Z (eV).
        metadata: JSON-able description of the fit (data, residuals, settings).
    """

    numbers: tuple[int, ...]
    cutoff: float
    powers: tuple[int, ...]
    pair_coefficients: np.ndarray
    atom_energies: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if list(self.numbers) != sorted(set(self.numbers)) or not self.numbers:
            raise MLHError(f"repulsion species must be distinct and ascending, got {self.numbers}")
        if not (np.isfinite(self.cutoff) and self.cutoff > 0):
            raise MLHError(f"the repulsion cutoff must be positive, got {self.cutoff} Å")
        if not self.powers or min(self.powers) < 2:
            raise MLHError(f"repulsion powers must be integers >= 2, got {self.powers}")
        n = len(self.numbers)
        shapes = {"pair_coefficients": (n * (n + 1) // 2, len(self.powers)),
                  "atom_energies": (n,)}
        for name, shape in shapes.items():
            value = np.asarray(getattr(self, name), float)
            if value.shape != shape or not np.isfinite(value).all():
                raise MLHError(f"repulsion {name} must be finite with shape {shape}, got "
                               f"{value.shape}")

    @property
    def n_species(self) -> int:
        return len(self.numbers)

    def species_index(self, numbers: np.ndarray) -> np.ndarray:
        """(N,) species indices of atomic numbers; MLHError for species without parameters."""
        missing = sorted(set(np.asarray(numbers).tolist()) - set(self.numbers))
        if missing:
            from ase.data import chemical_symbols

            raise MLHError(f"the repulsion has no parameters for "
                           f"{', '.join(chemical_symbols[z] for z in missing)} (it has "
                           f"{', '.join(chemical_symbols[z] for z in self.numbers)})")
        return np.searchsorted(np.asarray(self.numbers), numbers).astype(np.int32)

    def pair_potential(self, r: np.ndarray, number_a: int, number_b: int) -> np.ndarray:
        """phi_AB(r) (eV) at distances r (Å), numpy."""
        a, b = self.species_index(np.array([number_a, number_b]))
        coefficients = np.asarray(self.pair_coefficients)[_pair_types(self.n_species)[a, b]]
        x = np.clip(1.0 - np.asarray(r, float) / self.cutoff, 0.0, None)
        return sum(c * x**p for c, p in zip(coefficients, self.powers))



@dataclass(frozen=True, eq=False)
class RepulsionTopology(SkinnedTopology):
    """The pairs of one structure within the cutoff + skin (a pytree; see `repulsion_topology`).

    Attributes:
        positions: (n_atoms, 3) reference positions (Å); shifts refer to these.
        cell: (3, 3) lattice vectors as rows (Å).
        pair_i, pair_j: (P,) each unordered pair once (record orientation).
        pair_shift: (P, 3) integer lattice shifts of atom j.
        pair_type: (P,) species-pair index (`Repulsion.pair_coefficients` row).
        species_counts: (S,) atoms of each species.
        cutoff: r_c (Å); powers: exponents; n_types: number of species pairs.
        skin: extra reach (Å): exact while no atom moved more than skin / 2.
    """

    positions: np.ndarray
    cell: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    pair_shift: np.ndarray
    pair_type: np.ndarray
    species_counts: np.ndarray
    cutoff: float
    powers: tuple[int, ...]
    n_types: int
    skin: float


register_pytree(RepulsionTopology, meta=("cutoff", "powers", "n_types", "skin"))


def repulsion_topology(
    repulsion: Repulsion, positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
    numbers: np.ndarray, skin: float = 0.0,
) -> RepulsionTopology:
    """Pairs within the repulsion's cutoff + skin at `positions` (numpy; not jittable).

    Raises:
        MLHError: species the repulsion lacks, or a negative skin.
    """
    if skin < 0:
        raise MLHError(f"skin must be >= 0 Å, got {skin}")
    species = repulsion.species_index(numbers)
    positions = np.asarray(positions, float)
    i, j, shift, _ = neighbour_pairs(positions, cell, pbc, repulsion.cutoff + skin)
    keep = canonical_pair_mask(i, j, shift)
    i, j, shift = i[keep], j[keep], shift[keep]
    return RepulsionTopology(
        positions=positions, cell=np.asarray(cell, float), pair_i=i, pair_j=j, pair_shift=shift,
        pair_type=_pair_types(repulsion.n_species)[species[i], species[j]],
        species_counts=np.bincount(species, minlength=repulsion.n_species).astype(float),
        cutoff=float(repulsion.cutoff), powers=tuple(repulsion.powers),
        n_types=repulsion.n_species * (repulsion.n_species + 1) // 2, skin=float(skin))


def repulsion_features(positions: jax.Array, topology: RepulsionTopology) -> jax.Array:
    """(n_types, n_powers) sums over pairs of (1 - r / r_c)^p_n per species pair (jax.numpy;
    differentiable in positions (n_atoms, 3), Å)."""
    R_pv = (positions[topology.pair_j] + topology.pair_shift @ topology.cell
            - positions[topology.pair_i])
    r2 = jnp.sum(R_pv**2, axis=-1)
    r = jnp.sqrt(jnp.where(r2 > 0, r2, 1.0))
    x = jnp.clip(1.0 - r / topology.cutoff, 0.0, None)
    basis = jnp.stack([x**p for p in topology.powers], axis=-1)          # (P, n_powers)
    return jax.ops.segment_sum(basis, topology.pair_type, num_segments=topology.n_types)


def repulsion_energy(
    positions: jax.Array, topology: RepulsionTopology, pair_coefficients: jax.Array,
    atom_energies: jax.Array,
) -> jax.Array:
    """E_rep (eV) at positions (n_atoms, 3), Å; jax.numpy, differentiable in positions."""
    return (jnp.sum(repulsion_features(positions, topology) * pair_coefficients)
            + jnp.dot(topology.species_counts, atom_energies))


@jax.jit
def _energy_and_gradient(positions, topology, pair_coefficients, atom_energies):
    return jax.value_and_grad(repulsion_energy)(positions, topology, pair_coefficients,
                                                atom_energies)


def repulsion_energy_and_forces(repulsion: Repulsion, atoms: Atoms) -> tuple[float, np.ndarray]:
    """E_rep (eV) and its forces -dE_rep/dR (n_atoms, 3), eV/Å, of a structure."""
    require_x64("physics.band.repulsion")
    topology = repulsion_topology(repulsion, atoms.positions, atoms.cell.array, atoms.pbc,
                                  atoms.numbers)
    energy, gradient = _energy_and_gradient(
        jnp.asarray(atoms.positions), topology, jnp.asarray(repulsion.pair_coefficients),
        jnp.asarray(repulsion.atom_energies))
    return float(energy), -np.asarray(gradient)


# ------------------------------------------------------------------ fitting
@dataclass(frozen=True)
class FitReport:
    """Residuals of a repulsion fit (root mean squares over the training data).

    Attributes:
        n_structures: structures fitted; n_force_components: force components fitted.
        energy_rmse_before, energy_rmse_after: RMS of the per-atom energy target before
            (E_rep = 0) and after the fit (eV/atom).
        force_rmse_before, force_rmse_after: the same for force components (eV/Å).
    """

    n_structures: int
    n_force_components: int
    energy_rmse_before: float
    energy_rmse_after: float
    force_rmse_before: float
    force_rmse_after: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@jax.jit
def _features_and_jacobian(positions, topology):
    return (repulsion_features(positions, topology),
            jax.jacrev(repulsion_features)(positions, topology))


def fit_repulsion(
    structures: list[Atoms],
    energies: np.ndarray,
    forces: list[np.ndarray | None],
    cutoff: float = DEFAULT_CUTOFF,
    powers: tuple[int, ...] = DEFAULT_POWERS,
    energy_sigma: float = 1e-3,
    force_sigma: float = 0.05,
    ridge: float = 1e-2,
    metadata: dict | None = None,
) -> tuple[Repulsion, FitReport]:
    """Least-squares repulsion for target energies and forces of structures.

    Minimises

        sum_s ((E_s - E_rep(s)) / (N_s energy_sigma))^2
        + sum_s,a,v ((F_s,av - F_rep(s)_av) / force_sigma)^2 + ridge |c|^2

    over the pair coefficients c and the one-body energies e_Z (not regularised), a
    linear problem solved by numpy.linalg.lstsq. Species pairs that never come within the
    cutoff get c = 0.

    Args:
        structures: the structures (Å); all their species get parameters.
        energies: (n_structures,) target energies (eV), e.g. E_DFT - A_band.
        forces: per structure (N_s, 3) target forces (eV/Å), or None to fit its energy only.
        cutoff, powers: the basis (module docstring).
        energy_sigma: weight of the energies: the per-atom error worth one unit (eV/atom).
        force_sigma: weight of the forces: the component error worth one unit (eV/Å).
        ridge: Tikhonov weight on c (1/eV^2), keeps an ill-determined fit small.
        metadata: stored in the result's metadata with the fit report.

    Returns:
        The fitted Repulsion and the FitReport of its residuals.

    Raises:
        MLHError: no structures, mismatched lengths or shapes, non-finite targets, or bad
            weights.
    """
    require_x64("physics.band.repulsion")
    energies = np.asarray(energies, float)
    if not structures or energies.shape != (len(structures),) or len(forces) != len(structures):
        raise MLHError(f"{len(structures)} structures need as many energies and force arrays, "
                       f"got {energies.shape} and {len(forces)}")
    if min(energy_sigma, force_sigma) <= 0 or ridge < 0:
        raise MLHError("energy_sigma and force_sigma must be positive and ridge >= 0")
    numbers = tuple(sorted({int(z) for atoms in structures for z in atoms.numbers}))
    n_species = len(numbers)
    n_types = n_species * (n_species + 1) // 2
    template = Repulsion(numbers, float(cutoff), tuple(int(p) for p in powers),
                         np.zeros((n_types, len(powers))), np.zeros(n_species))
    n_pair = n_types * len(powers)

    rows, targets, is_force = [], [], []
    for atoms, energy, force in zip(structures, energies, forces):
        n = len(atoms)
        topology = repulsion_topology(template, atoms.positions, atoms.cell.array, atoms.pbc,
                                      atoms.numbers)
        features, jacobian = _features_and_jacobian(jnp.asarray(atoms.positions), topology)
        rows.append(np.concatenate([np.ravel(features), topology.species_counts]) / n)
        targets.append(energy / n)
        is_force.append(False)
        if force is not None:
            force = np.asarray(force, float)
            if force.shape != (n, 3):
                raise MLHError(f"forces of shape {force.shape} for a structure of {n} atoms")
            # F_rep = -dE_rep/dR = -J c
            block = -np.asarray(jacobian).reshape(n_pair, 3 * n).T
            rows.extend(np.hstack([block, np.zeros((3 * n, n_species))]))
            targets.extend(force.ravel())
            is_force.extend([True] * (3 * n))
    A, y, is_force = np.array(rows), np.array(targets), np.array(is_force)
    if not np.isfinite(y).all():
        raise MLHError("the target energies or forces are not finite")
    scale = np.where(is_force, 1.0 / force_sigma, 1.0 / energy_sigma)
    used = np.abs(A[:, :n_pair]).max(axis=0) > 0
    columns = np.concatenate([used, np.ones(n_species, bool)])
    regulariser = np.sqrt(ridge) * np.eye(len(columns))[:n_pair][used][:, columns]
    solution, *_ = np.linalg.lstsq(
        np.vstack([A[:, columns] * scale[:, None], regulariser]),
        np.concatenate([y * scale, np.zeros(len(regulariser))]), rcond=None)
    parameters = np.zeros(len(columns))
    parameters[columns] = solution
    residual = y - A @ parameters

    def rms(values):
        return float(np.sqrt(np.mean(values**2))) if values.size else float("nan")

    report = FitReport(
        n_structures=len(structures), n_force_components=int(is_force.sum()),
        energy_rmse_before=rms(y[~is_force]), energy_rmse_after=rms(residual[~is_force]),
        force_rmse_before=rms(y[is_force]), force_rmse_after=rms(residual[is_force]))
    repulsion = dataclasses.replace(
        template, pair_coefficients=parameters[:n_pair].reshape(n_types, len(powers)),
        atom_energies=parameters[n_pair:],
        metadata={**(metadata or {}), "fit": report.as_dict(),
                  "energy_sigma_eV_per_atom": energy_sigma, "force_sigma_eV_per_A": force_sigma,
                  "ridge": ridge})
    return repulsion, report


# ------------------------------------------------------------------ files
def write_repulsion(repulsion: Repulsion, path: str | os.PathLike) -> None:
    """Write the repulsion as JSON (atomically)."""
    from ase.data import chemical_symbols

    pairs = [f"{chemical_symbols[repulsion.numbers[a]]}-{chemical_symbols[repulsion.numbers[b]]}"
             for a in range(repulsion.n_species) for b in range(a, repulsion.n_species)]
    description = {
        "format_version": FORMAT_VERSION,
        "formula": "E = sum_a e_Z + sum_pairs sum_n c_AB,n (1 - r/cutoff)^p_n, r < cutoff",
        "units": {"energy": "eV", "length": "Angstrom"},
        "numbers": list(repulsion.numbers),
        "cutoff": repulsion.cutoff,
        "powers": list(repulsion.powers),
        "species_pairs": pairs,
        "pair_coefficients": np.asarray(repulsion.pair_coefficients).tolist(),
        "atom_energies": np.asarray(repulsion.atom_energies).tolist(),
        "metadata": repulsion.metadata,
    }
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(description, indent=1))


def read_repulsion(path: str | os.PathLike) -> Repulsion:
    """Read a repulsion JSON file; MLHError naming the file if it is missing or corrupt."""
    try:
        data = json.loads(Path(path).read_text())
        version = data.get("format_version")
        fields = dict(
            numbers=tuple(int(z) for z in data["numbers"]), cutoff=float(data["cutoff"]),
            powers=tuple(int(p) for p in data["powers"]),
            pair_coefficients=np.asarray(data["pair_coefficients"], float),
            atom_energies=np.asarray(data["atom_energies"], float),
            metadata=dict(data.get("metadata", {})))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise MLHError(f"{path}: missing or corrupt repulsion file ({error})") from None
    if version != FORMAT_VERSION:
        raise MLHError(f"{path}: repulsion format {version!r}, expected {FORMAT_VERSION!r}")
    try:
        return Repulsion(**fields)
    except MLHError as error:
        raise MLHError(f"{path}: {error}") from None
