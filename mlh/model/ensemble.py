"""Committees of models: the mean of several trained models of one architecture.

Models trained alike (other seeds, other data) err partly independently, so the mean of
their predictions is closer to the reference than each (docs/predictor.md gives the
measured gain), and the members' spread says where they disagree. The mean of equivariant,
Hermitian, strictly local models is all three, and it is differentiable, so every route
that takes a model takes a committee.

On disk a committee is a folder with `ensemble.json` (format, member folders, their model
digests) and the member model folders under `members/`; `write_ensemble` copies the members
in and writes the folder atomically. `Predictor.load` of such a folder returns an
`EnsemblePredictor`. Committees predict; they are not trained (train the members).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlh.errors import MLHError
from mlh.file_output import atomic_folder
from mlh.model.integrity import CHECKSUM_FILE, MODEL_FILES
from mlh.model.kernel import ModelKernel
from mlh.model.predictor import Predictor

__all__ = ["ENSEMBLE_FILE", "EnsembleKernel", "EnsemblePredictor", "is_ensemble", "load_ensemble",
           "stack_members", "write_ensemble"]

ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_FORMAT = "1"
MEMBERS_FOLDER = "members"


def is_ensemble(folder: Path) -> bool:
    """True for a committee folder (it holds ensemble.json)."""
    return (Path(folder) / ENSEMBLE_FILE).is_file()


@dataclass(frozen=True, eq=False)
class EnsembleKernel(ModelKernel):
    """ModelKernel of a committee: parameters and tables carry a leading member axis, the
    descriptors a member axis after the atom axis (so that chunking and gathering over
    atoms work unchanged), and the outputs are the members' mean (eV)."""

    def descriptors(self, params: Any, center_species: Any, neighbor_species: Any,
                    edge_center: Any, edge_neighbor: Any, edge_vector: Any) -> Any:
        import jax

        member = super().descriptors
        return jax.vmap(member, in_axes=(0, None, None, None, None, None), out_axes=1)(
            params, center_species, neighbor_species, edge_center, edge_neighbor, edge_vector)

    def onsite(self, params: Any, tables: Any, descriptors: Any, species: Any) -> Any:
        import jax

        return jax.vmap(super().onsite, in_axes=(0, 0, 1, None))(
            params, tables, descriptors, species).mean(axis=0)

    def potential(self, params: Any, descriptors: Any) -> Any:
        import jax

        return jax.vmap(super().potential, in_axes=(0, 1))(params, descriptors).mean(axis=0)

    def pairs(self, params: Any, tables: Any, descriptor_i: Any, descriptor_j: Any,
              species_i: Any, species_j: Any, vector: Any) -> Any:
        import jax

        return jax.vmap(super().pairs, in_axes=(0, 0, 1, 1, None, None, None))(
            params, tables, descriptor_i, descriptor_j, species_i, species_j, vector).mean(axis=0)

    def graph(self, params: Any, tables: Any, species: Any, edge_center: Any,
              edge_neighbor: Any, edge_vector: Any, bond_i: Any, bond_j: Any,
              bond_vector: Any) -> tuple[Any, Any, Any]:
        import jax

        outputs = jax.vmap(super().graph, in_axes=(0, 0, *[None] * 7))(
            params, tables, species, edge_center, edge_neighbor, edge_vector, bond_i, bond_j,
            bond_vector)
        return jax.tree_util.tree_map(lambda x: x.mean(axis=0), outputs)


@dataclass(frozen=True)
class EnsemblePredictor(Predictor):
    """A committee of predictors of one architecture, species and basis (and GPAW
    settings): `params` is the members' parameter trees stacked along a leading axis,
    `stats` the first member's (for its species), `members` the members themselves."""

    members: tuple[Predictor, ...] = ()

    @property
    def kernel(self) -> EnsembleKernel:
        return EnsembleKernel(self.model)

    @property
    def n_parameters(self) -> int:
        return sum(member.n_parameters for member in self.members)

    def tables(self, dtype=np.float32):
        """The members' OutputTables stacked along a leading axis."""
        import jax

        return jax.tree_util.tree_map(lambda *x: np.stack(x), *(m.tables(dtype) for m in self.members))

    def with_params(self, params: Any, metadata: dict | None = None) -> Predictor:
        raise MLHError(f"{self.name}: a committee is not trained or fine-tuned; train its members "
                       f"and build a new committee (mlh ensemble)")

    def save(self, folder: Path) -> str:
        raise MLHError(f"{self.name}: a committee is written by write_ensemble (mlh ensemble), "
                       f"from its members' folders")


def stack_members(members: list[Predictor], name: str = "the committee") -> EnsemblePredictor:
    """One EnsemblePredictor of `members`.

    Raises:
        MLHError: fewer than two members, or a member whose architecture, species, basis or
            GPAW settings (its data's and its baseline's) differ from the first member's.
    """
    import jax

    if len(members) < 2:
        raise MLHError(f"{name}: a committee needs at least two members, got {len(members)}")
    first = members[0]
    for member in members[1:]:
        differs = [what for what, same in (
            ("model settings", member.config == first.config),
            ("species, basis or layouts", member.layouts.to_dict() == first.layouts.to_dict()),
            ("GPAW settings of its data", member.metadata.get("gpaw") == first.metadata.get("gpaw")),
            ("baseline settings", member.metadata.get("baseline") == first.metadata.get("baseline")),
        ) if not same]
        if differs:
            raise MLHError(f"{name}: member {member.name} differs from {first.name} in its "
                           f"{', '.join(differs)}; a committee's members share them")
    params = jax.tree_util.tree_map(lambda *x: np.stack([np.asarray(v) for v in x]),
                                    *(m.params for m in members))
    digest = hashlib.sha256("".join(f"{m.digest}\n" for m in members).encode()).hexdigest()
    metadata = {**first.metadata, "ensemble": [
        {"member": m.name, "digest": m.digest, "best": m.metadata.get("best")} for m in members]}
    return EnsemblePredictor(first.config, first.layouts, first.stats, params, metadata,
                             digest=digest, name=name, members=tuple(members))


def write_ensemble(folder: Path, member_folders: list[Path]) -> str:
    """Write a committee folder of copies of the member models' files (atomically,
    replacing an existing one; not their extras such as a fitted Harris share, which
    belong to the committee's own folder); return its digest.

    Raises:
        MLHError: a member that does not load (named), members that differ (stack_members),
            or a member that is itself a committee.
    """
    folder = Path(folder)
    for path in member_folders:
        if is_ensemble(path):
            raise MLHError(f"{path}: a committee cannot be a member; give its members")
    members = [Predictor.load(Path(path)) for path in member_folders]
    stack_members(members, str(folder))  # checks before anything is written
    with atomic_folder(folder) as tmp:
        entries = []
        for k, (path, member) in enumerate(zip(member_folders, members)):
            relative = f"{MEMBERS_FOLDER}/{k}"
            (tmp / relative).mkdir(parents=True)
            for name in (*MODEL_FILES, CHECKSUM_FILE):  # not a member's extras (its Harris share)
                if (Path(path) / name).exists():  # models saved before digests have no checksums
                    shutil.copy2(Path(path) / name, tmp / relative / name)
            entries.append({"folder": relative, "source": str(path), "digest": member.digest})
        (tmp / ENSEMBLE_FILE).write_text(json.dumps(
            {"format_version": ENSEMBLE_FORMAT, "members": entries}, indent=1))
    return load_ensemble(folder).digest


def load_ensemble(folder: Path) -> EnsemblePredictor:
    """Read a committee folder: every member loaded and checked against its digest in
    ensemble.json.

    Raises:
        MLHError: naming an unreadable ensemble.json, a member that does not load or
            whose digest differs from the one recorded, or members that differ.
    """
    folder = Path(folder)
    path = folder / ENSEMBLE_FILE
    try:
        description = json.loads(path.read_text())
        if description.get("format_version") != ENSEMBLE_FORMAT:
            raise MLHError(f"{path}: committee format {description.get('format_version')!r}, "
                           f"expected {ENSEMBLE_FORMAT!r}")
        entries = [(str(e["folder"]), str(e["digest"])) for e in description["members"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise MLHError(f"{path}: missing or corrupt committee description ({error})") from None
    members = []
    for relative, digest in entries:
        member = Predictor.load(folder / relative)
        if member.digest != digest:
            raise MLHError(f"{folder / relative}: its model digest differs from the one in {path} "
                           f"(a changed member); rebuild the committee")
        members.append(member)
    return stack_members(members, str(folder))
