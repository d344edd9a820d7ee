"""Inference (`mlh infer`): predicted Hamiltonian records for structures, memory-bounded.

For each structure the predictor gives H blocks (eV) of every pair within its bond
cutoff; S(R) comes exactly from GPAW's two-centre tables (`mlh.gpaw.overlap`) with the GPAW
settings of the training data, or from a given record. The output is a
`HamiltonianRecord` in the training-data schema: pairs are the union of S's pairs and
the model's bonds, minus negligible ones (the records' 1e-9 rule). Work is chunked
(centre atoms for descriptors and on-site blocks, bonds for pair blocks), so memory
grows linearly with the structure, and no dense N_orb x N_orb matrix is made. Runs on
CPU unless asked for GPU, with the highest matmul precision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from ase import Atoms

from mlh.errors import MLHError
from mlh.gpaw.reference import drop_negligible_pairs, ghost_mask
from mlh.gpaw.settings import gpaw_settings_of
from mlh.model.atom_potential import add_to_values, value_atoms
from mlh.model.graph import MIN_DISTANCE, build_graph, check_min_distance, neighbour_pairs
from mlh.model.kernel import far_vectors
from mlh.model.predictor import Predictor
from mlh.model.targets import onsite_blocks, pair_blocks
from mlh.record.basis import check_model_basis
from mlh.record.hamiltonian import HamiltonianRecord, Labels

__all__ = [
    "InferenceOptions",
    "InferenceResult",
    "predict_irreps",
    "predict_record",
    "infer_files",
]

_BLOCK_TOLERANCE = 1e-9


@dataclass(frozen=True)
class InferenceOptions:
    """Chunk sizes and device.

    Attributes:
        atom_chunk: centre atoms per descriptor / on-site step.
        bond_chunk: bonds per pair step.
        device: "cpu" or "gpu" ("gpu" falls back to an error if JAX has none).
    """

    atom_chunk: int = 256
    bond_chunk: int = 4096
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "gpu"):
            raise MLHError(f"unknown device {self.device!r}; choose cpu or gpu")


def _padded(n: int, multiple: int) -> int:
    return max(multiple, -(-n // multiple) * multiple)


def _far_padded(vectors: np.ndarray, size: int) -> np.ndarray:
    """(size, 3) float32 vectors (Å): `vectors`, then padding rows at the kernel's FAR_VECTOR."""
    valid = np.arange(size) < len(vectors)
    padded = np.zeros((size, 3), np.float32)
    padded[: len(vectors)] = vectors
    return far_vectors(padded, valid)


class _Runner:
    """The model kernel's three stages, jitted, run over chunks of atoms and bonds (shapes
    padded so few compilations happen)."""

    def __init__(self, predictor: Predictor, options: InferenceOptions):
        import jax

        self.predictor = predictor
        self.options = options
        self.tables = predictor.tables()
        kernel = predictor.kernel
        self.descriptors = jax.jit(kernel.descriptors)
        self.onsite = jax.jit(kernel.onsite)
        self.pairs = jax.jit(kernel.pairs)
        self.potential = jax.jit(kernel.potential)

    def atom_descriptors(self, graph) -> np.ndarray:
        params = self.predictor.params
        species = graph.species
        if self.predictor.config.atom_centered.message_passing.steps > 0:  # needs the whole graph
            vectors = graph.edge_vector.astype(np.float32)
            return np.asarray(self.descriptors(params, species, species[graph.edge_neighbor],
                                               graph.edge_center, graph.edge_neighbor, vectors))
        chunk = self.options.atom_chunk
        order = np.argsort(graph.edge_center, kind="stable")
        starts = np.searchsorted(graph.edge_center[order], np.arange(0, graph.n_atoms + chunk, chunk))
        parts = []
        for k, first in enumerate(range(0, graph.n_atoms, chunk)):
            atoms = np.arange(first, min(first + chunk, graph.n_atoms))
            edges = order[starts[k] : starts[k + 1]]
            n_edges = _padded(len(edges), 8192)
            center = np.full(n_edges, chunk - 1, np.int32)
            center[: len(edges)] = graph.edge_center[edges] - first
            neighbor_species = np.zeros(n_edges, np.int32)
            neighbor_species[: len(edges)] = species[graph.edge_neighbor[edges]]
            center_species = np.zeros(chunk, np.int32)
            center_species[: len(atoms)] = species[atoms]
            out = self.descriptors(params, center_species, neighbor_species, center, center,
                                   _far_padded(graph.edge_vector[edges], n_edges))
            parts.append(np.asarray(out)[: len(atoms)])
        return np.concatenate(parts)

    def _atom_chunks(self, descriptors: np.ndarray, species: np.ndarray):
        """(atoms in the chunk, padded descriptors, padded species) per chunk of atoms."""
        chunk = self.options.atom_chunk
        for first in range(0, len(species), chunk):
            d = descriptors[first : first + chunk]
            n = len(d)
            d = np.concatenate([d, np.zeros((chunk - n, *d.shape[1:]), d.dtype)])
            s = np.zeros(chunk, np.int32)
            s[:n] = species[first : first + n]
            yield n, d, s

    def onsite_irreps(self, descriptors: np.ndarray, species: np.ndarray) -> np.ndarray:
        params, tables = self.predictor.params, self.tables
        parts = [np.asarray(self.onsite(params, tables, d, s))[:n]
                 for n, d, s in self._atom_chunks(descriptors, species)]
        return np.concatenate(parts).astype(np.float64)

    def potential_levels(self, descriptors: np.ndarray, species: np.ndarray) -> np.ndarray | None:
        """Potential levels (N,) in eV, or None for a model without them."""
        if not self.predictor.config.atom_potential:
            return None
        parts = [np.asarray(self.potential(self.predictor.params, d))[:n]
                 for n, d, _ in self._atom_chunks(descriptors, species)]
        return np.concatenate(parts).astype(np.float64)

    def pair_irreps(self, descriptors: np.ndarray, graph) -> np.ndarray:
        chunk = self.options.bond_chunk
        shape = self.predictor.layouts.offsite_shape
        parts = [np.zeros((0, *shape))]
        for first in range(0, graph.n_bonds, chunk):
            bonds = np.arange(first, min(first + chunk, graph.n_bonds))
            n = len(bonds)
            take_i = np.zeros(chunk, np.int64)
            take_j = np.zeros(chunk, np.int64)
            take_i[:n], take_j[:n] = graph.bond_i[bonds], graph.bond_j[bonds]
            out = self.pairs(
                self.predictor.params, self.tables, descriptors[take_i], descriptors[take_j],
                graph.species[take_i], graph.species[take_j], _far_padded(graph.bond_vector[bonds], chunk),
            )
            parts.append(np.asarray(out)[:n].astype(np.float64))
        return np.concatenate(parts)


def _device(name: str):
    import jax

    if name == "cpu":
        return jax.devices("cpu")[0]
    try:
        return jax.devices("gpu")[0]
    except RuntimeError as error:
        raise MLHError("device 'gpu' requested but JAX finds no GPU") from error


_RUNNER: list[_Runner] = []
"""The most recent runner, reused while the same predictor and options are asked for (its
jitted functions are compiled once, not per structure)."""


def _runner(predictor: Predictor, options: InferenceOptions) -> _Runner:
    if not (_RUNNER and _RUNNER[0].predictor is predictor and _RUNNER[0].options == options):
        _RUNNER[:] = [_Runner(predictor, options)]
    return _RUNNER[0]


def predict_irreps(
    predictor: Predictor, graph, options: InferenceOptions = InferenceOptions()
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """On-site irreps (N, 2, L, F), pair irreps (B, 2, L, F) and potential levels (N,) (None
    without `atom_potential`; mlh.model.atom_potential) in eV of a graph (float64 copies)."""
    import jax

    with jax.default_device(_device(options.device)), jax.default_matmul_precision("highest"):
        runner = _runner(predictor, options)
        descriptors = runner.atom_descriptors(graph)
        return (runner.onsite_irreps(descriptors, graph.species), runner.pair_irreps(descriptors, graph),
                runner.potential_levels(descriptors, graph.species))


def _overlap(atoms: Atoms, predictor: Predictor, source: str):
    """Exact S blocks of `atoms` with the model's GPAW settings; basis checked against the model."""
    from mlh.gpaw.overlap import overlap_blocks

    blocks = overlap_blocks(atoms, gpaw_settings_of(predictor), tolerance=0.0)
    check_model_basis(blocks.basis, predictor.layouts.basis, atoms.numbers, source)
    return blocks


BASELINE_ORBITAL_LIMIT = 20_000
"""Largest structure (orbitals) whose H0 a correction model builds: GPAW's LCAO matrices
are dense (N x N complex per k-point), so beyond this a direct model is the route."""


def baseline_for(atoms: Atoms, predictor: Predictor, source: str) -> HamiltonianRecord:
    """S(R) and the zeroth-step H0(R) of `atoms` from GPAW with the correction model's
    settings (no SCF); MLHError naming `source` if it cannot be built."""
    from mlh.gpaw.reference import reference_record
    from mlh.gpaw.settings import baseline_settings_of

    settings = baseline_settings_of(predictor)
    n_orbitals = int(predictor.layouts.basis.orbital_counts(atoms.numbers).sum())
    if n_orbitals > BASELINE_ORBITAL_LIMIT:
        raise MLHError(f"{source}: {n_orbitals} orbitals are too many for the zeroth-step H0 "
                       f"(GPAW's dense LCAO matrices; limit {BASELINE_ORBITAL_LIMIT}): use a model "
                       f"with target 'hamiltonian' for structures this large")
    try:
        record = reference_record(atoms, settings)
    except MLHError as err:
        raise MLHError(f"{source}: cannot build H0: {err}") from None
    check_model_basis(record.basis, predictor.layouts.basis, atoms.numbers, source)
    return record


def _check_baseline(record: HamiltonianRecord, predictor: Predictor, source: str) -> None:
    """MLHError unless the record carries a baseline made with the correction model's settings
    (H0, or the first-step baseline of the model's share and k-point density)."""
    from mlh.gpaw.settings import FIRST_STEP_KEYS, baseline_settings_of, settings_from_provenance

    if not record.has_baseline:
        raise MLHError(f"{source}: the model predicts corrections to the zeroth-step H0, but the "
                       f"record has no H0 (make it with mlh generate --baseline or --baseline-only)")
    wanted = baseline_settings_of(predictor)
    provenance = record.provenance
    model = {"xc": wanted.xc, "basis": wanted.basis, "h": wanted.h,
             "first_step_share": wanted.first_step_share}
    try:
        core = settings_from_provenance(provenance)
        given = {"xc": core["xc"], "basis": core["basis"],
                 "h": float(provenance.get("grid_spacing_angstrom", np.nan)),
                 "first_step_share": float(provenance.get(FIRST_STEP_KEYS["first_step_share"], 0.0))}
        if wanted.first_step_share:
            model["kpoint_density"] = wanted.kpoint_density
            given["kpoint_density"] = float(provenance.get(FIRST_STEP_KEYS["kpoint_density"], np.nan))
    except (MLHError, TypeError, ValueError):
        raise MLHError(f"{source}: the record's provenance does not say how its H0 was made") from None
    setups = {s: v for s, v in core["setups"].items() if s in wanted.setups}
    if given != model or setups != {s: wanted.setups[s] for s in setups}:
        raise MLHError(f"{source}: its H0 was made with {given} and setups {core['setups']}, the "
                       f"model's with {model} and setups {wanted.setups}")


def _merge_pairs(record: HamiltonianRecord, graph) -> tuple[np.ndarray, np.ndarray]:
    """Record with the union of its pairs and the graph's bonds (zero S for new ones), and the
    position of each bond among the merged pairs."""
    keys = {
        (int(i), int(j), *map(int, s)): n
        for n, (i, j, s) in enumerate(zip(record.pair_i, record.pair_j, record.pair_shift))
    }
    position = np.empty(graph.n_bonds, np.int64)
    extra = []
    for b, (i, j, s) in enumerate(zip(graph.bond_i, graph.bond_j, graph.bond_shift)):
        key = (int(i), int(j), *map(int, s))
        if key not in keys:
            keys[key] = record.n_pairs + len(extra)
            extra.append(b)
        position[b] = keys[key]
    return np.asarray(extra, np.int64), position


def predict_record(
    predictor: Predictor,
    structure: Atoms | HamiltonianRecord,
    source: str = "structure",
    options: InferenceOptions = InferenceOptions(),
) -> HamiltonianRecord:
    """Predicted Hamiltonian record of a structure (S exact) or of a record (its S kept).

    Of the labels only the valence electron count is kept: from GPAW's setups for a
    structure, from the given record's labels for a record.

    A model with `atom_potential` adds its potential term with the record's S on every
    stored pair (mlh.model.atom_potential).

    A correction model (config target "correction") predicts dH; the record then holds
    H = H0 + dH and H0 itself: H0 from GPAW's initial density with the model's settings for
    a structure (`baseline_for`), the record's own H0 for a record.

    Ghost atoms (`record.ghost`, or `atoms.arrays["ghost"]`) are predicted as their own
    species (see `mlh.model.layouts`).

    Raises:
        MLHError: species (or ghost species) unknown to the model, a basis differing
            from the model's, atoms closer than 0.5 Å, a GPAW setup problem, or, for a
            correction model, a structure whose H0 cannot be built or a record without H0
            or with other settings than the model's.
    """
    start = time.perf_counter()
    layouts = predictor.layouts
    correction = predictor.config.target == "correction"
    if isinstance(structure, HamiltonianRecord):
        base = structure
        n_electrons = base.labels.n_electrons
        species = layouts.species_index(base.numbers, source, base.ghost, predictor.name)
        check_model_basis(base.basis, layouts.basis, base.numbers, source)
        if correction:
            _check_baseline(base, predictor, source)
    else:
        atoms = structure
        species = layouts.species_index(atoms.numbers, source, ghost_mask(atoms), predictor.name)
        i, j, _, vector = neighbour_pairs(atoms.positions, atoms.cell.array, atoms.pbc, MIN_DISTANCE)
        check_min_distance(vector, i, j, source)  # before the costlier overlap or H0
        if correction:
            base = baseline_for(atoms, predictor, source)
            n_electrons = base.labels.n_electrons
        else:
            blocks = _overlap(atoms, predictor, source)
            n_electrons = blocks.n_electrons
            base = HamiltonianRecord(
                numbers=atoms.numbers.copy(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy(),
                ghost=ghost_mask(atoms), **blocks.record_fields(),
            )
    graph = build_graph(
        species, base.positions, base.cell, base.pbc, predictor.atom_cutoff, predictor.bond_cutoff, source
    )
    onsite, offsite, potential = predict_irreps(predictor, graph, options)

    extra, position = _merge_pairs(base, graph)
    counts = base.orbital_counts
    pair_i = np.concatenate([base.pair_i, graph.bond_i[extra]])
    pair_j = np.concatenate([base.pair_j, graph.bond_j[extra]])
    pair_shift = np.concatenate([base.pair_shift, graph.bond_shift[extra]])
    sizes = counts[pair_i] * counts[pair_j]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    new_values = np.zeros(offsets[-1] - len(base.S_pair))
    S_pair = np.concatenate([base.S_pair, new_values])
    H_pair = np.zeros(offsets[-1])
    si, sj = graph.species[graph.bond_i], graph.species[graph.bond_j]
    for bond, block in enumerate(pair_blocks(offsite, si, sj, layouts)):
        H_pair[offsets[position[bond]] : offsets[position[bond] + 1]] = block
    H_onsite = np.concatenate(onsite_blocks(onsite, graph.species, layouts))
    if potential is not None:  # on every pair with S, also those beyond the bond cutoff
        H_pair, H_onsite = add_to_values(H_pair, H_onsite, S_pair, base.S_onsite, potential,
                                         value_atoms(pair_i, pair_j, counts))
    H0_pair = H0_onsite = None
    if correction:  # H = H0 + dH; pairs beyond the bond cutoff keep H0
        H0_pair = np.concatenate([base.H0_pair[0], new_values])
        H0_onsite = base.H0_onsite[0]
        H_pair, H_onsite = H_pair + H0_pair, H_onsite + H0_onsite
    order = np.lexsort((*(pair_shift.T[::-1]), pair_j, pair_i))
    value_index = np.concatenate([np.arange(offsets[p], offsets[p + 1]) for p in order]) if len(order) else np.zeros(0, int)
    provenance = {
        "code": "mlh",
        "task": "prediction",
        **predictor.provenance,
        "model_parameters": predictor.n_parameters,
        "model_species": " ".join(map(str, layouts.numbers)),
        "bond_cutoff_angstrom": predictor.bond_cutoff,
        "model_target": predictor.config.target,
        "overlap": "given record" if isinstance(structure, HamiltonianRecord) else "GPAW two-centre tables",
        "source": source,
        "wall_time_seconds": time.perf_counter() - start,
    }
    record = replace(
        base,
        pair_i=pair_i[order],
        pair_j=pair_j[order],
        pair_shift=pair_shift[order],
        S_pair=S_pair[value_index],
        H_pair=H_pair[value_index][None, :],
        H_onsite=H_onsite[None, :],
        H0_pair=None if H0_pair is None else H0_pair[value_index][None, :],
        H0_onsite=None if H0_onsite is None else H0_onsite[None, :],
        labels=Labels(n_electrons=n_electrons),
        provenance={**base.provenance, **provenance} if isinstance(structure, HamiltonianRecord) else provenance,
    )
    return drop_negligible_pairs(record, _BLOCK_TOLERANCE)


@dataclass(frozen=True)
class InferenceResult:
    """Outcome of one structure of a batch: written (or earlier-written) file, or the error."""

    name: str
    path: Path | None
    error: str | None
    seconds: float
    skipped: bool = False


def infer_files(
    predictor: Predictor,
    inputs: list[Path],
    output: Path,
    options: InferenceOptions = InferenceOptions(),
    progress: bool = True,
) -> list[InferenceResult]:
    """Predict a record for every frame of ASE-readable files and every record file (*.nc).

    Writes OUTPUT/<name>.nc atomically; existing outputs are skipped (a killed batch
    resumes; their results have `skipped` set). An input that fails (an unreadable file,
    an unknown species, atoms too close, ...) is reported in the results with an error
    naming it; the others go on. OUTPUT/.mlh.lock keeps a second run out meanwhile.

    Raises:
        MLHError: no input structures at all, or another run writes into OUTPUT.
    """
    from tqdm import tqdm

    from mlh.file_output import output_lock
    from mlh.gpaw.generate import collect_structures
    from mlh.record.io import read_record, write_record

    records = [Path(p) for p in inputs if Path(p).suffix == ".nc"]
    items: list[tuple[str, str, object]] = [(p.stem, str(p), p) for p in records]
    frames, problems = collect_structures([Path(p) for p in inputs if Path(p).suffix != ".nc"])
    items += frames
    results = [InferenceResult(path.stem, None, problem, 0.0) for path, problem in problems]
    if not items:
        if results:
            return results
        raise MLHError("no input structures")
    with output_lock(output, "mlh infer"):
        for name, source, item in tqdm(items, desc="infer", disable=None if progress else True):
            target = Path(output) / f"{name}.nc"
            if target.exists():
                results.append(InferenceResult(name, target, None, 0.0, skipped=True))
                continue
            start = time.perf_counter()
            try:
                structure = read_record(item) if isinstance(item, Path) else item
                write_record(predict_record(predictor, structure, source, options), target)
                results.append(InferenceResult(name, target, None, time.perf_counter() - start))
            except MLHError as error:
                results.append(InferenceResult(name, None, str(error), time.perf_counter() - start))
    return results
