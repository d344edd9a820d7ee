"""A trained (or freshly initialised) model: hyperparameters, layouts, scale-shift and weights.

On disk a predictor is a folder:
- `model.json`: format version, model hyperparameters, species and their basis, cutoffs;
- `scale_shift.nc`: the scale-shift tables (`mlh.model.scale_shift`);
- `params.msgpack`: the flax parameters (float32);
- `checksums.json`: the SHA-256 of the three files and the model digest (`mlh.model.integrity`).
`save` writes a complete folder under a temporary name and renames it into place, so a
reader never sees half a model. `load` checks the files against their digests (a folder
without `checksums.json`, written before digests existed, loads with an MLHWarning), then
every part, and names the bad file.

A committee folder (`ensemble.json` and member folders, written by mlh.model.ensemble)
loads as an `EnsemblePredictor`: the members stacked, predicting their mean.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from mlh.errors import MLHError, MLHWarning
from mlh.file_output import atomic_folder
from mlh.model.config import ModelConfig
from mlh.model.integrity import CHECKSUM_FILE, folder_digest, verify_checksums, write_checksums
from mlh.model.kernel import FAR_VECTOR
from mlh.model.layouts import OutputLayouts
from mlh.model.scale_shift import ScaleShift, read_scale_shift, write_scale_shift
from mlh.record.basis import Basis, SpeciesBasis

__all__ = ["ENSEMBLE_FILE", "FORMAT_VERSION", "EnsemblePredictor", "Predictor", "basis_to_dict",
           "basis_from_dict", "is_ensemble", "load_ensemble", "seal", "stack_members"]

FORMAT_VERSION = "1"

ENSEMBLE_FILE = "ensemble.json"
"""The description of a committee folder (mlh.model.ensemble): member folders, digests."""
ENSEMBLE_FORMAT = "1"


def basis_to_dict(basis: Basis) -> dict:
    """JSON-able form of a Basis."""
    return {
        "name": basis.name,
        "species": [
            {"number": s.number, "ls": list(s.ls), "rcuts": list(s.rcuts), "labels": list(s.labels)}
            for s in basis.species
        ],
    }


def basis_from_dict(data: dict) -> Basis:
    """Inverse of `basis_to_dict`."""
    species = tuple(
        SpeciesBasis(int(s["number"]), tuple(s["ls"]), tuple(s["rcuts"]), tuple(s["labels"]))
        for s in data["species"]
    )
    return Basis(name=data["name"], species=species)


@dataclass(frozen=True)
class Predictor:
    """Everything needed to predict Hamiltonians.

    Attributes:
        config: model hyperparameters.
        layouts: species and irreps layouts.
        stats: scale-shift tables.
        params: flax parameter pytree.
        metadata: free-form training summary (JSON-able).
        digest: the model digest (SHA-256 of its files) of a saved or loaded model; None
            for parameters that were never saved.
        name: what messages call the model (its folder once saved or loaded).
    """

    config: ModelConfig
    layouts: OutputLayouts
    stats: ScaleShift
    params: Any
    metadata: dict
    digest: str | None = None
    name: str = "the model"

    @property
    def model(self):
        """The flax module."""
        from mlh.model.nn.model import GearsH

        return GearsH(self.config, self.layouts.n_species, self.layouts.onsite_shape, self.layouts.offsite_shape)

    @property
    def kernel(self):
        """The model as pure functions (mlh.model.kernel.ModelKernel)."""
        from mlh.model.kernel import ModelKernel

        return ModelKernel(self.model)

    @property
    def atom_cutoff(self) -> float:
        return self.config.atom_centered.radial_basis.cutoff

    @property
    def bond_cutoff(self) -> float:
        return self.config.bond_centered.cutoff

    @property
    def n_parameters(self) -> int:
        import jax

        return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(self.params)))

    def tables(self, dtype=np.float32):
        """The model's constant OutputTables (numpy arrays of `dtype`)."""
        from mlh.model.nn.model import OutputTables

        layouts, stats = self.layouts, self.stats
        s = layouts.n_species
        onsite_index, onsite_sign = layouts.onsite_transpose
        offsite_index, offsite_sign = layouts.offsite_transpose
        return OutputTables(
            onsite_mask=layouts.onsite_mask.reshape(s, -1).astype(dtype),
            onsite_index=onsite_index,
            onsite_sign=onsite_sign,
            onsite_scale=stats.onsite_scale.astype(dtype),
            onsite_shift=stats.onsite_shift.astype(dtype),
            offsite_mask=layouts.offsite_mask.reshape(s, s, -1).astype(dtype),
            offsite_index=offsite_index,
            offsite_sign=offsite_sign,
            offsite_scale=stats.offsite_scale.astype(dtype),
            offsite_shift=stats.offsite_shift.astype(dtype),
            shift_centres=stats.shift_centres.astype(dtype),
            shift_width=np.asarray(stats.shift_width, dtype),
        )

    @classmethod
    def initialise(
        cls, config: ModelConfig, layouts: OutputLayouts, stats: ScaleShift, seed: int = 0
    ) -> Predictor:
        """A predictor with freshly initialised parameters.

        Raises:
            MLHError: readouts that cannot reach the degrees of the layouts' basis.
        """
        import jax

        config.check_output_degrees(layouts.onsite_degree, layouts.offsite_degree)

        predictor = cls(config, layouts, stats, params=None, metadata={})
        init = jax.jit(predictor.model.init)  # one compilation, not one per operation
        return predictor.with_params(init(jax.random.PRNGKey(seed), *predictor._init_inputs()))

    def _init_inputs(self) -> tuple:
        """A one-atom, one-edge, one-bond input (beyond every cutoff) to build parameters from."""
        far = np.array([FAR_VECTOR], np.float32)
        zeros = np.zeros(1, np.int32)
        return zeros, zeros, zeros, far, zeros, zeros, far, self.tables()

    def _parameter_shapes(self) -> Any:
        """Parameter tree of ShapeDtypeStructs, without computing any parameter."""
        import jax

        return jax.eval_shape(self.model.init, jax.random.PRNGKey(0), *self._init_inputs())

    def with_params(self, params: Any, metadata: dict | None = None) -> Predictor:
        """The same model with other parameters (never saved: no digest)."""
        return Predictor(self.config, self.layouts, self.stats, params, metadata or self.metadata,
                         name=self.name)

    def save(self, folder: Path) -> str:
        """Write the predictor folder atomically (replacing an existing one), its checksums
        included; return the model digest."""
        from flax import serialization

        with atomic_folder(folder) as tmp:
            description = {
                "format_version": FORMAT_VERSION,
                "model": self.config.model_dump(mode="json"),
                "layouts": self.layouts.to_dict(),
                "basis": basis_to_dict(self.layouts.basis),
                "metadata": self.metadata,
            }
            (tmp / "model.json").write_text(json.dumps(description, indent=1))
            write_scale_shift(self.stats, tmp / "scale_shift.nc")
            (tmp / "params.msgpack").write_bytes(serialization.msgpack_serialize(_to_numpy(self.params)))
            digest = write_checksums(tmp)
        return digest

    @classmethod
    def load(cls, folder: Path) -> Predictor:
        """Read a predictor folder (a committee folder gives an EnsemblePredictor,
        mlh.model.ensemble); MLHError naming the missing, corrupt or changed file.

        A folder without checksums.json (older than model digests) loads with an
        MLHWarning: its files cannot be checked.
        """
        from flax import serialization

        folder = Path(folder)
        if not folder.is_dir():
            raise MLHError(f"{folder}: no such model folder")
        if is_ensemble(folder):
            return load_ensemble(folder)
        digest = verify_checksums(folder)
        if digest is None:
            warnings.warn(MLHWarning(
                f"{folder}: no {CHECKSUM_FILE}, so the model files cannot be checked for corruption "
                f"(a model saved before digests); `mlh seal {folder}` writes one"), stacklevel=2)
        description_path = folder / "model.json"
        try:
            description = json.loads(description_path.read_text())
            if description.get("format_version") != FORMAT_VERSION:
                raise MLHError(
                    f"{description_path}: model format {description.get('format_version')!r}, "
                    f"expected {FORMAT_VERSION!r}"
                )
            config = ModelConfig.model_validate(description["model"])
            basis = basis_from_dict(description["basis"])
            layouts = OutputLayouts(basis=basis, **{
                k: (tuple(v) if k == "numbers" else v) for k, v in description["layouts"].items()
            })
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as error:
            raise MLHError(f"{description_path}: missing or corrupt model description ({error})") from error
        stats = read_scale_shift(folder / "scale_shift.nc")
        predictor = cls(config, layouts, stats, params=None, metadata=description.get("metadata", {}),
                        name=str(folder))
        template = predictor._parameter_shapes()
        params_path = folder / "params.msgpack"
        try:
            state = serialization.msgpack_restore(params_path.read_bytes())
            params = serialization.from_state_dict(template, state)
            _check_shapes(template, params)
        except Exception as error:  # msgpack and flax raise many types for corrupt bytes
            raise MLHError(f"{params_path}: missing or corrupt parameters ({error})") from error
        return replace(predictor, params=params, digest=digest or folder_digest(folder))

    @property
    def provenance(self) -> dict[str, str]:
        """What a predicted record says of its model: folder and digest."""
        return {"model": self.name, "model_sha256": self.digest or "none (parameters never saved)"}


def is_ensemble(folder: Path) -> bool:
    """True for a committee folder (it holds ensemble.json)."""
    return (Path(folder) / ENSEMBLE_FILE).is_file()


@dataclass(frozen=True)
class EnsemblePredictor(Predictor):
    """A committee of predictors of one architecture, species and basis (and GPAW
    settings): `params` is the members' parameter trees stacked along a leading axis,
    `stats` the first member's (for its species), `members` the members themselves."""

    members: tuple[Predictor, ...] = ()

    @property
    def kernel(self):
        """The committee's kernel (mlh.model.kernel.EnsembleKernel)."""
        from mlh.model.kernel import EnsembleKernel

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


def seal(folder: Path) -> str:
    """Write checksums.json for a model folder that has none (older than digests), after
    checking that the folder loads; return the model digest.

    Raises:
        MLHError: the folder already has checksums.json, is a committee (its members carry
            theirs; seal them before `mlh ensemble`), or does not load.
    """
    folder = Path(folder)
    if (folder / CHECKSUM_FILE).exists():
        raise MLHError(f"{folder / CHECKSUM_FILE}: the model already has checksums")
    if is_ensemble(folder):
        raise MLHError(f"{folder}: a committee is identified by its members' digests; seal the "
                       f"members before building it with mlh ensemble")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MLHWarning)
        Predictor.load(folder)
    return write_checksums(folder)


def _to_numpy(params: Any) -> Any:
    import jax
    from flax import serialization

    return serialization.to_state_dict(jax.tree_util.tree_map(np.asarray, params))


def _check_shapes(template: Any, params: Any) -> None:
    import jax

    expected_leaves, got_leaves = jax.tree_util.tree_leaves(template), jax.tree_util.tree_leaves(params)
    if len(expected_leaves) != len(got_leaves):
        raise ValueError(f"{len(got_leaves)} parameter arrays where {len(expected_leaves)} were expected")
    for expected, got in zip(expected_leaves, got_leaves):
        if tuple(expected.shape) != np.shape(got):
            raise ValueError(f"parameter of shape {np.shape(got)} where {tuple(expected.shape)} was expected")
