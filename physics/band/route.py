"""The band-energy route: total energy and forces from the model's H(R) and the exact S(R).

    E(R) = A_band[H_model(R), S(R)] + E_rep(R),
    A_band = sum_s,k w_k g sum_n f_n eps_n - T S      (Fermi-Dirac, fixed electron count),

with E_rep the fitted short-range term of physics.band.repulsion. With the density matrices
held fixed, dA_band = Tr[rho dH] - Tr[W dS] (Hellmann-Feynman for the Mermin free energy:
no eigenvector derivatives), so the forces are one gradient of the scalar

    L(R) = Tr[rho H_model(R)] - Tr[W S(R)] + E_rep(R),       F = -dL/dR,

through the model (physics.band.model_hamiltonian), the overlap (physics.band.overlap
`overlap_trace`) and the repulsion, with rho and W (physics.density_matrix) as constants.
H and S share one pair list: the overlap's pairs (GPAW's reach) united with the model's
bonds, in the record layout of mlh.record.hamiltonian; both are built with a skin so that the
topology is reused while atoms move less than skin / 2.

`fit_repulsion_to_records` fits E_rep to GPAW labels: E_DFT - A_band[H_model] and
F_DFT - F_band[H_model] over training records. The model's own band energy is used, not
the DFT H's: the route evaluates A_band[H_model], whose error is first order in the error
of H (a uniform 1 meV shift moves it by N_electrons meV), and F_band needs dH/dR, which
only the model has. E_rep so absorbs the model's systematic band-energy error as well.

Units: eV, Å. Needs float64: run inside `jax.enable_x64(True)` (as `BandEnergyRoute`
does) or after `jax.config.update("jax_enable_x64", True)`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np
from ase import Atoms

from mlh.errors import MLHError
from mlh.gpaw.overlap import OverlapTables, gpaw_setups, pair_list, pair_reach, wrapped_positions
from mlh.gpaw.record_settings import DEFAULT_WIDTH
from mlh.gpaw.settings import GPAWSettings, gpaw_settings_of
from mlh.model.atom_potential import ValueAtoms, add_to_values, potential_values, value_atoms
from mlh.model.atom_potential import populations as atom_populations
from mlh.model.graph import neighbour_pairs
from mlh.model.predictor import Predictor
from mlh.record.hamiltonian import HamiltonianRecord, canonical_pair_mask
from mlh.record.kpoints import monkhorst_pack
from physics.band.model_hamiltonian import HamiltonianTopology, ModelHamiltonian, hamiltonian_topology
from physics.band.overlap import OverlapTopology, overlap_blocks_jax, overlap_topology, overlap_trace
from physics.band.repulsion import (
    Repulsion,
    RepulsionTopology,
    repulsion_energy,
    repulsion_topology,
)
from physics.density_matrix import density_matrices_for_record, density_matrix_blocks

__all__ = ["EnergyTopology", "EnergyResult", "BandEnergyRoute", "energy_topology", "DEFAULT_SKIN"]

DEFAULT_SKIN = 0.5
"""Extra reach of the neighbour lists (Å): topologies are reused while atoms move < 0.25 Å."""


# ------------------------------------------------------------------ topology
@dataclass(frozen=True, eq=False)
class EnergyTopology:
    """Neighbour lists of H, S and E_rep of one structure, fixed while atoms stay within
    skin / 2 of the reference (see `energy_topology`).

    Attributes:
        hamiltonian: the model's edges, bonds and block maps.
        overlap: the S(R) topology on the same pair list.
        repulsion: the repulsion's pairs, or None without a repulsion.
        record: a HamiltonianRecord of the structure with the shared pair list, zero S
            and no H: the layout the blocks are returned in.
        offset: (n_atoms, 3) wrapped reference positions minus the given positions (Å):
            positions given later are shifted by it, so they move continuously from the
            reference.
        n_electrons: valence electrons of the neutral structure (GPAW setups).
        value_atoms: the atoms of every value of `record`'s layout, for the potential term
            of a model with `atom_potential` (mlh.model.atom_potential); None otherwise.
    """

    hamiltonian: HamiltonianTopology
    overlap: OverlapTopology
    repulsion: RepulsionTopology | None
    record: HamiltonianRecord
    offset: np.ndarray
    n_electrons: float
    value_atoms: ValueAtoms | None = None

    def internal_positions(self, positions: np.ndarray) -> np.ndarray:
        """Positions (Å) in the topology's frame (given positions + offset)."""
        return np.asarray(positions, float) + self.offset

    def fits(self, atoms: Atoms) -> bool:
        """True if this topology is exact for `atoms` (same species, cell, periodicity and
        every atom within skin / 2 of the reference)."""
        record = self.record
        return (len(atoms) == record.n_atoms and np.array_equal(atoms.numbers, record.numbers)
                and np.array_equal(atoms.cell.array, record.cell)
                and np.array_equal(atoms.pbc, record.pbc)
                and self.overlap.within_skin(self.internal_positions(atoms.positions)))


def _union_pairs(*lists: tuple[np.ndarray, np.ndarray, np.ndarray]):
    """Sorted union of record-layout pair lists (i, j, R)."""
    rows = np.unique(np.concatenate([np.column_stack([i, j, s]) for i, j, s in lists]), axis=0)
    return rows[:, 0], rows[:, 1], rows[:, 2:]


def energy_topology(
    atoms: Atoms,
    predictor: Predictor,
    tables: OverlapTables,
    repulsion: Repulsion | None = None,
    skin: float = DEFAULT_SKIN,
    source: str = "structure",
) -> EnergyTopology:
    """Build the shared topology of H, S and E_rep for `atoms` (numpy).

    Args:
        atoms: the structure (Å; a cell is required, as for GPAW).
        predictor: the model.
        tables: mlh.gpaw.overlap.OverlapTables of the structure's setups (model's GPAW settings).
        repulsion: the repulsion, or None.
        skin: extra reach of all neighbour lists (Å).
        source: name of the structure in error messages.

    Raises:
        MLHError: species the model or the repulsion lacks, a GPAW basis that differs from
            the model's, atoms closer than 0.5 Å, no cell, or a negative skin.
    """
    if skin < 0:
        raise MLHError(f"skin must be >= 0 Å, got {skin}")
    if abs(np.linalg.det(atoms.cell.array)) < 1e-6:
        raise MLHError(f"{source}: a cell is required (put a molecule in a box)")
    predictor.layouts.species_index(atoms.numbers, source)
    basis = predictor.layouts.basis
    gpaw_counts = tables.nao_I[tables.type_a]
    if not np.array_equal(gpaw_counts, basis.orbital_counts(atoms.numbers)):
        raise MLHError(f"{source}: GPAW's basis for these species differs from the model's")
    positions = wrapped_positions(atoms)
    cell, pbc = atoms.cell.array.copy(), atoms.pbc.copy()
    i, j, shift, _ = neighbour_pairs(positions, cell, pbc, predictor.bond_cutoff + skin)
    bonds = canonical_pair_mask(i, j, shift)
    pairs = _union_pairs(pair_list(atoms, pair_reach(tables.setups, atoms.numbers) + 0.5 * skin),
                         (i[bonds], j[bonds], shift[bonds]))
    hamiltonian = hamiltonian_topology(predictor, positions, cell, pbc, atoms.numbers, pairs,
                                       skin, source)
    overlap = overlap_topology(atoms, tables, pairs=pairs, skin=skin)
    zero_pair = np.zeros(int(np.sum(gpaw_counts[pairs[0]] * gpaw_counts[pairs[1]])))
    record = HamiltonianRecord(
        numbers=atoms.numbers.copy(), positions=positions, cell=cell, pbc=pbc,
        ghost=np.zeros(len(atoms), bool), basis=basis, pair_i=pairs[0], pair_j=pairs[1],
        pair_shift=pairs[2], S_pair=zero_pair, S_onsite=np.zeros(int(np.sum(gpaw_counts**2))))
    return EnergyTopology(
        hamiltonian=hamiltonian, overlap=overlap,
        repulsion=None if repulsion is None else repulsion_topology(
            repulsion, positions, cell, pbc, atoms.numbers, skin),
        record=record, offset=positions - atoms.positions,
        n_electrons=float(tables.setups.nvalence),
        value_atoms=value_atoms(pairs[0], pairs[1], gpaw_counts)
        if predictor.config.atom_potential else None)


# ------------------------------------------------------------------ evaluation
@dataclass(frozen=True)
class EnergyResult:
    """Energies (eV) and forces (eV/Å) of the band-energy route.

    Attributes:
        free_energy: A_band + E_rep, the Mermin free energy the forces belong to (eV).
        energy: free_energy - (-T S) / 2, extrapolated to zero width as GPAW does for
            Fermi-Dirac occupations (eV).
        forces: (n_atoms, 3) -dE_free/dR (eV/Å), None if not asked for.
        band_energy: sum f eps (eV).
        entropy_energy: -T S of the occupations (eV, <= 0).
        repulsion_energy: E_rep (eV; 0 without a repulsion).
        fermi_level: E_F (eV).
        n_electrons: electrons placed.
        timings: seconds in "topology", "hamiltonian" (H and S), "diagonalisation", "forces".
    """

    free_energy: float
    energy: float
    forces: np.ndarray | None
    band_energy: float
    entropy_energy: float
    repulsion_energy: float
    fermi_level: float
    n_electrons: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def band_free_energy(self) -> float:
        """A_band = band_energy + entropy_energy (eV)."""
        return self.band_energy + self.entropy_energy


def _shapes(tree) -> tuple:
    """Tree structure (static fields included) and leaf shapes: what a jit compiles for."""
    leaves, structure = jax.tree_util.tree_flatten(tree)
    return structure, tuple(np.shape(leaf) for leaf in leaves)


class _Functions:
    """The route's jitted pieces for one model architecture (parameters are arguments).

    Two program families: the model's H and the gradient of Tr[rho H] (edge and bond counts
    are bucketed, so few shapes occur; the expensive compilation), and the local part: S,
    E_rep and the gradient of E_rep - Tr[W S] (one shape per topology; compiles in a few
    seconds). When more than MAX_SHAPES shapes of a family have been compiled, its compiled
    code is dropped (a model program is ~10^2 MB; a fit over many structures would pile
    them up).
    """

    MAX_SHAPES = 4

    def __init__(self, hamiltonian: ModelHamiltonian):
        apply = hamiltonian.apply

        def band_trace(positions, params, tables, inputs, rho, populations):
            """Tr[rho H_model(R)] with rho constant (flat group layout, `flat_cotangent`), plus
            <populations, u(R)> for a model's potential levels u (S held fixed)."""
            pair, onsite, potential = apply(params, tables, positions, inputs)
            value = jnp.dot(rho[0], pair) + jnp.dot(rho[1], onsite)
            return value if potential is None else value + jnp.dot(populations, potential)

        def local(positions, overlap, repulsion, repulsion_parameters):
            S = overlap_blocks_jax(positions, overlap)
            rep = (0.0 if repulsion is None
                   else repulsion_energy(positions, repulsion, *repulsion_parameters))
            return S, rep

        def local_surrogate(positions, overlap, repulsion, repulsion_parameters, W):
            """E_rep(R) - Tr[W S(R)] with W constant (record layout)."""
            value = -overlap_trace(W[0], W[1], positions, overlap)
            if repulsion is not None:
                value += repulsion_energy(positions, repulsion, *repulsion_parameters)
            return value

        self.hamiltonian = jax.jit(apply)
        self.hamiltonian_gradient = jax.jit(jax.grad(band_trace))
        self.local = jax.jit(local)
        self.local_gradient = jax.jit(jax.grad(local_surrogate))
        self._compiled: dict[str, set] = {"model": set(), "local": set()}

    def prepare(self, topology: EnergyTopology) -> None:
        """Note the shapes of a new topology; drop old compiled code if too many piled up."""
        families = {
            "model": (topology.hamiltonian.inputs,
                      (self.hamiltonian, self.hamiltonian_gradient)),
            "local": ((topology.overlap, topology.repulsion), (self.local, self.local_gradient)),
        }
        for name, (parts, functions) in families.items():
            shapes, compiled = _shapes(parts), self._compiled[name]
            if shapes not in compiled and len(compiled) >= self.MAX_SHAPES:
                for function in functions:
                    function.clear_cache()
                compiled.clear()
            compiled.add(shapes)


_FUNCTIONS: dict[str, _Functions] = {}
"""Jitted functions of the most recent model architecture: routes (and calculators) of
predictors with the same architecture share them, so each topology shape compiles once."""


def _functions(hamiltonian: ModelHamiltonian) -> _Functions:
    predictor = hamiltonian.predictor
    key = repr((predictor.config.model_dump_json(), predictor.layouts.n_species,
                predictor.layouts.onsite_shape, predictor.layouts.offsite_shape))
    if key not in _FUNCTIONS:
        _FUNCTIONS.clear()
        _FUNCTIONS[key] = _Functions(hamiltonian)
    return _FUNCTIONS[key]


class BandEnergyRoute:
    """E and F of structures from a predictor (+ repulsion), reusing topologies between calls.

    Every computation runs inside jax.enable_x64(True) (thread-local; global JAX settings
    are not touched). The model's jitted programs compile once per padded size, the S/E_rep
    part once per topology (compile times in docs/physics.md); routes of models with the
    same architecture share them, and moves within the skin reuse the topology.

    Attributes:
        predictor: the model; its GPAW settings (training data) give S and the electrons.
        repulsion: E_rep, or None for the band free energy alone.
        width: Fermi-Dirac width (eV).
        kpts: Monkhorst-Pack grid, or None for `kpoint_density` (GPAW's rule, 1 along
            non-periodic directions).
        kpoint_density: k-points per reciprocal Å when kpts is None.
        skin: extra reach of the neighbour lists (Å).
        charge: net charge (e).
        baseline_added: the caller adds H0 to a correction model's dH (the DFT-functional
            route does); otherwise a correction model is refused, as its output alone is
            not H.
    """

    def __init__(
        self,
        predictor: Predictor,
        repulsion: Repulsion | None = None,
        width: float = DEFAULT_WIDTH,
        kpts: tuple[int, int, int] | None = None,
        kpoint_density: float = GPAWSettings().kpoint_density,
        skin: float = DEFAULT_SKIN,
        charge: float = 0.0,
        baseline_added: bool = False,
    ):
        if predictor.config.target != "hamiltonian" and not baseline_added:
            raise MLHError("the band route takes a model of H itself (target 'hamiltonian'); a "
                           "correction model's H = H0 + dH needs H0 as a function of the "
                           "positions, which the band route does not have (use the dft route)")
        if not (np.isfinite(width) and width > 0):
            raise MLHError(f"the Fermi-Dirac width must be positive, got {width} eV")
        if skin < 0:
            raise MLHError(f"skin must be >= 0 Å, got {skin}")
        self.predictor = predictor
        self.repulsion = repulsion
        self.width = float(width)
        self.kpts = kpts
        self.kpoint_density = kpoint_density
        self.skin = float(skin)
        self.charge = float(charge)
        self.settings = gpaw_settings_of(predictor)
        self._tables: dict[tuple[int, ...], OverlapTables] = {}
        self._topology: EnergyTopology | None = None
        self._potential_state: tuple | None = None  # topology, positions, u, S_pair, S_onsite
        self.topology_builds = 0
        with jax.enable_x64(True):
            self._repulsion_parameters = None if repulsion is None else (
                jnp.asarray(repulsion.pair_coefficients), jnp.asarray(repulsion.atom_energies))
        self.hamiltonian = ModelHamiltonian(predictor)
        self._functions = _functions(self.hamiltonian)

    # -------------------------------------------------------------- topology
    def overlap_tables(self, atoms: Atoms) -> OverlapTables:
        """GPAW's two-centre tables for the species sequence of `atoms` (cached)."""
        key = tuple(int(z) for z in atoms.numbers)
        if key not in self._tables:
            self._tables = {key: OverlapTables(gpaw_setups(atoms, self.settings))}
        return self._tables[key]

    def topology(self, atoms: Atoms, source: str = "structure") -> EnergyTopology:
        """The current topology if it fits `atoms`, else a new one (counted in
        `topology_builds`)."""
        if self._topology is None or not self._topology.fits(atoms):
            self._topology = energy_topology(atoms, self.predictor, self.overlap_tables(atoms),
                                             self.repulsion, self.skin, source)
            self._functions.prepare(self._topology)
            self.topology_builds += 1
        return self._topology

    def kpoints(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """The k-points and weights used for `atoms` (time-reversal-reduced MP grid)."""
        if self.kpts is not None:
            size = np.where(atoms.pbc, self.kpts, 1)
        else:
            size = GPAWSettings(kpoint_density=self.kpoint_density).scf_kpts(atoms.cell.array,
                                                                               atoms.pbc)
        return monkhorst_pack(size, time_reversal=True)

    # -------------------------------------------------------------- evaluation
    def _blocks(self, atoms: Atoms, source: str, timings: dict[str, float]
                ) -> tuple[EnergyTopology, HamiltonianRecord, float]:
        """Topology, the record of H_model and S at `atoms`, and E_rep (inside enable_x64)."""
        start = time.perf_counter()
        topology = self.topology(atoms, source)
        positions = topology.internal_positions(atoms.positions)
        topology.hamiltonian.check_distances(positions, source)
        timings["topology"] = time.perf_counter() - start

        start = time.perf_counter()
        record, rep = self._blocks_at(topology, positions, source)
        timings["hamiltonian"] = time.perf_counter() - start
        return topology, record, rep

    def _blocks_at(self, topology: EnergyTopology, positions: np.ndarray,
                   source: str = "structure") -> tuple[HamiltonianRecord, float]:
        """The record of H_model and S at internal `positions`, and E_rep (inside enable_x64)."""
        functions, hamiltonian, model = self._functions, self.hamiltonian, topology.hamiltonian
        pair, onsite, potential = functions.hamiltonian(
            hamiltonian.params, hamiltonian.tables, model.padded_positions(positions),
            model.inputs)
        H_pair, H_onsite = model.record_blocks(pair, onsite)
        (S_pair, S_onsite), rep = functions.local(jnp.asarray(positions), topology.overlap,
                                                  topology.repulsion, self._repulsion_parameters)
        S_pair, S_onsite = np.asarray(S_pair), np.asarray(S_onsite)
        if potential is not None:
            potential = np.asarray(potential)[:len(positions)]
            H_pair, H_onsite = add_to_values(H_pair, H_onsite, S_pair, S_onsite, potential,
                                             topology.value_atoms)
            self._potential_state = (topology, positions.copy(), potential, S_pair, S_onsite)
        if not (np.isfinite(H_pair).all() and np.isfinite(H_onsite).all()):
            raise MLHError(f"{source}: the model predicted NaN or infinite Hamiltonian elements")
        record = replace(topology.record, positions=positions, S_pair=S_pair,
                         S_onsite=S_onsite, H_pair=H_pair[None],
                         H_onsite=H_onsite[None])
        return record, float(rep)

    def predicted_record(self, atoms: Atoms, source: str = "structure") -> HamiltonianRecord:
        """The model's H (float64) and the exact (smooth) S of `atoms` as a record in the
        topology's pair layout (positions wrapped as GPAW wraps them)."""
        with jax.enable_x64(True):
            return self._blocks(atoms, source, {})[1]

    def _potential_inputs(self, topology: EnergyTopology, positions: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Potential levels u (eV) and S (pair, on-site values) at `positions` (internal):
        those of the last evaluation there, else computed now."""
        state = self._potential_state
        if state is None or state[0] is not topology or not np.array_equal(state[1], positions):
            self._blocks_at(topology, positions)
            state = self._potential_state
        return state[2:]

    def _trace_gradient(self, topology: EnergyTopology, record: HamiltonianRecord,
                        rho: list[np.ndarray], W: list[np.ndarray]) -> np.ndarray:
        """d/dR of Tr[rho H_model(R)] - Tr[W S(R)] + E_rep(R), rho and W constant (eV/Å).

        With a potential term a * S (mlh.model.atom_potential) in H_model, its derivative
        splits into <q, du/dR> with q the populations of rho (S fixed) and the S part,
        Tr[(a rho) dS/dR], which joins -Tr[W dS/dR] as W - a rho.
        """
        functions, hamiltonian, model = self._functions, self.hamiltonian, topology.hamiltonian
        populations = np.zeros(len(model.inputs.species))
        if topology.value_atoms is not None:
            potential, S_pair, S_onsite = self._potential_inputs(topology, record.positions)
            populations[:record.n_atoms] = atom_populations(
                2.0 * rho[0], rho[1], S_pair, S_onsite, topology.value_atoms, record.n_atoms)
            pair_level, onsite_level = potential_values(potential, topology.value_atoms)
            W = [W[0] - pair_level * rho[0], W[1] - onsite_level * rho[1]]
        band = functions.hamiltonian_gradient(
            model.padded_positions(record.positions), hamiltonian.params,
            hamiltonian.tables, model.inputs, model.flat_cotangent(*rho), populations)
        local = functions.local_gradient(jnp.asarray(record.positions), topology.overlap,
                                         topology.repulsion, self._repulsion_parameters, W)
        return np.asarray(band)[:record.n_atoms] + np.asarray(local)

    def trace_gradient(self, atoms: Atoms, rho: list[np.ndarray], W: list[np.ndarray],
                       source: str = "structure") -> np.ndarray:
        """(n_atoms, 3) gradient d/dR of Tr[rho H_model(R)] - Tr[W S(R)] + E_rep(R) (eV/Å).

        rho and W are constant spin-summed blocks (pair values, on-site values) in the
        layout of `predicted_record(atoms)` (physics.density_matrix.kspace_blocks).
        """
        with jax.enable_x64(True):
            topology = self.topology(atoms, source)
            positions = topology.internal_positions(atoms.positions)
            record = replace(topology.record, positions=positions)
            return self._trace_gradient(topology, record, rho, W)

    def evaluate(
        self,
        atoms: Atoms,
        forces: bool = True,
        kpoints: np.ndarray | None = None,
        kpoint_weights: np.ndarray | None = None,
        source: str = "structure",
    ) -> EnergyResult:
        """Energy (and forces) of `atoms`.

        Args:
            atoms: the structure (Å; a cell is required).
            forces: also compute forces.
            kpoints, kpoint_weights: reduced k-points (full or time-reversal-reduced grid)
                and weights; default `self.kpoints(atoms)`.
            source: name of the structure in error messages.

        Raises:
            MLHError: species the model (or repulsion) lacks, atoms closer than 0.5 Å, a
                GPAW basis differing from the model's, NaN in the predicted H, or an
                electron count the basis cannot hold.
        """
        timings: dict[str, float] = {}
        if kpoints is None:
            kpoints, kpoint_weights = self.kpoints(atoms)
        with jax.enable_x64(True):
            topology, record, rep = self._blocks(atoms, source, timings)
            start = time.perf_counter()
            dm = density_matrices_for_record(
                record, kpoints=kpoints, kpoint_weights=kpoint_weights,
                n_electrons=topology.n_electrons, width=self.width, charge=self.charge)
            timings["diagonalisation"] = time.perf_counter() - start

            F = None
            if forces:
                start = time.perf_counter()
                rho = [part.sum(axis=0) for part in density_matrix_blocks(dm, record)]
                W = [part.sum(axis=0)
                     for part in density_matrix_blocks(dm, record, energy_weighted=True)]
                F = -self._trace_gradient(topology, record, rho, W)
                timings["forces"] = time.perf_counter() - start

        free = dm.band_free_energy + rep
        return EnergyResult(
            free_energy=free, energy=free - 0.5 * dm.entropy_energy, forces=F,
            band_energy=dm.band_energy, entropy_energy=dm.entropy_energy,
            repulsion_energy=rep, fermi_level=dm.fermi_level,
            n_electrons=dm.n_electrons, timings=timings)
