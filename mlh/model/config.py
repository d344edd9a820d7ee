"""Training configuration: a validated YAML file whose defaults are GEARS H listings S3.1-S3.6.

Every section is a pydantic model with `extra="forbid"`, so a misspelt key is an error
that names the key. Lengths are in Å, energies in eV. `write_template` writes the
defaults as a commented YAML file (`mlh template train`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlh.errors import MLHError
from mlh.file_output import atomic_output

__all__ = [
    "PartitionConfig",
    "DataConfig",
    "RadialBasisConfig",
    "AtomCenteredConfig",
    "MessagePassingConfig",
    "BondCenteredConfig",
    "MLPConfig",
    "ModelConfig",
    "ScheduleConfig",
    "OptimizerConfig",
    "LossConfig",
    "TrainConfig",
    "load_config",
    "partition_config",
    "write_template",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartitionConfig(_Section):
    """Augmented slices of large periodic records (seed 004, section 3.3; `mlh.train.partition`).

    Give `thickness` or `count`. Slices are cut along one periodic cell axis; each keeps
    the periodicity of the other two, and holds, besides its own (labelled) atoms, every
    atom the model needs to predict their on-site blocks and the pairs they start.
    """

    axis: int = Field(0, ge=0, le=2, description="cell axis cut into slices (must be periodic)")
    thickness: float | None = Field(
        None, gt=0.0, description="slice thickness, Å (slices are at least this thick); or give count"
    )
    count: int | None = Field(None, ge=1, description="number of slices per record; or give thickness")
    folder: Path | None = Field(
        None, description="where partition files are written and reused; null: OUTPUT/partitions"
    )

    @model_validator(mode="after")
    def _thickness_or_count(self) -> PartitionConfig:
        if (self.thickness is None) == (self.count is None):
            raise ValueError("give exactly one of thickness and count")
        return self


class DataConfig(_Section):
    """Where the records are and how they are batched (S3.1)."""

    train_path: list[Path] = Field(
        default_factory=lambda: [Path("records")],
        description="folders or files of training records (NetCDF)",
    )
    valid_path: list[Path] = Field(
        default_factory=list,
        description="validation records; empty: split valid_fraction off the training set",
    )
    extra_train_path: list[Path] = Field(
        default_factory=list,
        description="more training records, never split off for validation (for example "
        "snapshots of relaxation trajectories added to a set whose validation split is kept)",
    )
    n_train: int | None = Field(None, ge=1, description="use at most this many training records")
    n_valid: int | None = Field(None, ge=1, description="use at most this many validation records")
    valid_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="split used when valid_path is empty")
    split_seed: int = Field(0, description="seed of the train/validation split and the shuffling")
    bond_fraction: float = Field(
        0.3, gt=0.0, le=1.0, description="random fraction of bonds entering each training step"
    )
    batch_size: int = Field(1, ge=1, description="structures per training step")
    valid_batch_size: int = Field(1, ge=1, description="structures per validation step")
    atoms_pad_multiple: int = Field(100, ge=1, description="atom arrays padded to a multiple of this")
    nl_pad_multiple: int = Field(
        10000, ge=1, description="neighbour and bond lists padded to a multiple of this"
    )
    partition: PartitionConfig | None = Field(
        None,
        description="train and validate on augmented slices streamed from disk, batch_size slices "
        "per device and step, e.g. {axis: 0, thickness: 10.0}; null: whole records",
    )


class RadialBasisConfig(_Section):
    """Species-aware radial basis of the atom-centred descriptor (S3.2)."""

    cutoff: float = Field(8.0, gt=0.0, description="neighbour cutoff of the atom-centred descriptor, Å")
    num_radial: int = Field(24, ge=1, description="sinusoidal radial functions")
    max_degree: int = Field(4, ge=0, le=8, description="largest spherical-harmonic degree")
    num_elemental_embedding: int = Field(32, ge=1, description="species embedding size")


class MessagePassingConfig(_Section):
    """Optional self-attention message passing between atom-centred features (S3.2; off by default)."""

    steps: int = Field(0, ge=0, description="message-passing steps (0: none, the GEARS H default)")
    max_degree: int = Field(4, ge=0, le=8, description="degree of the messages")
    num_heads: int = Field(4, ge=1)
    qkv_features: int = Field(32, ge=1)
    basis_max_degree: int = Field(2, ge=0, le=8, description="degree of the edge basis")
    basis_num: int = Field(8, ge=1, description="radial functions of the edge basis")


class AtomCenteredConfig(_Section):
    """Atom-centred density correlations (S3.2)."""

    radial_basis: RadialBasisConfig = RadialBasisConfig()
    num_tensordenses: int = Field(
        1, ge=0, description="TensorDense products; body order = 2 + this number"
    )
    max_tensordense_degree: int = Field(4, ge=0, le=8)
    num_tensordense_features: int = Field(12, ge=1)
    use_fused_tensor: bool = Field(False, description="e3x FusedTensor instead of Tensor")
    message_passing: MessagePassingConfig = MessagePassingConfig()


class BondCenteredConfig(_Section):
    """Bond-centred descriptor (S3.3)."""

    cutoff: float = Field(8.0, gt=0.0, description="pairs within this distance are predicted, Å")
    max_degree: int = Field(4, ge=0, le=8, description="degree of the bond features")
    expansion_num: int = Field(24, ge=1, description="radial functions of the bond-vector expansion")
    expansion_max_degree: int = Field(4, ge=0, le=8, description="degree of the bond-vector expansion")
    use_fused_tensor: bool = Field(False, description="e3x FusedTensor instead of Tensor")


class MLPConfig(_Section):
    """Residual dense block shared by on-site and off-site features (S3.4)."""

    layer_widths: list[int] = Field(default_factory=lambda: [32, 16, 32])
    activation: Literal["bent_identity", "mish", "silu", "gelu"] = "bent_identity"


class ModelConfig(_Section):
    """The GEARS H architecture."""

    atom_centered: AtomCenteredConfig = AtomCenteredConfig()
    bond_centered: BondCenteredConfig = BondCenteredConfig()
    mlp: MLPConfig = MLPConfig()
    target: Literal["hamiltonian", "correction"] = Field(
        "hamiltonian",
        description="what the network predicts: hamiltonian (H itself) or correction (dH = H - H0, "
        "H0 the zeroth-step Hamiltonian; training records need H0: mlh generate --baseline)",
    )
    atom_potential: bool = Field(
        False,
        description="add a learned potential level u_a (eV) per atom as u_a S_aa on-site and "
        "(u_i + u_j) / 2 S_ij on pairs, so one number moves all of an atom's blocks together as "
        "the self-consistent potential does (whole records only: needs S)",
    )

    def check_output_degrees(self, onsite_degree: int, offsite_degree: int, prefix: str = "") -> None:
        """MLHError unless the readouts can reach the irreps degrees a basis needs (an
        (l1, l2) block needs degree l1 + l2, so 4 with d orbitals): a readout multiplies
        features of degree max_tensordense_degree (on-site) or bond_centered.max_degree
        (off-site) with themselves, reaching twice that degree. Checked before training
        writes anything; e3x would fail deep inside JAX otherwise. `prefix` leads the
        field names in the message (e.g. "model." for a training configuration)."""
        for field, degree, needed, kind in (
            ("atom_centered.max_tensordense_degree", self.atom_centered.max_tensordense_degree,
             onsite_degree, "on-site"),
            ("bond_centered.max_degree", self.bond_centered.max_degree, offsite_degree, "off-site"),
        ):
            if 2 * degree < needed:
                raise MLHError(f"{prefix}{field} is {degree}, so the {kind} readout reaches degree "
                               f"{2 * degree}, but the basis needs degree {needed}: set it to at least "
                               f"{-(-needed // 2)}")


class ScheduleConfig(_Section):
    """Reduce-on-plateau learning-rate schedule (S3.5). The mean training loss of each
    window of `accumulation_size` steps is one plateau check; patience and cooldown count
    checks. "epoch" makes a window one epoch, so the schedule's pace does not depend on the
    size of the training set."""

    name: Literal["reduce_on_plateau", "constant"] = "reduce_on_plateau"
    factor: float = Field(0.9, gt=0.0, lt=1.0)
    patience: int = Field(50, ge=0)
    min_scale: float = Field(0.01, gt=0.0, le=1.0)
    rtol: float = Field(0.01, ge=0.0)
    atol: float = Field(0.0, ge=0.0)
    cooldown: int = Field(25, ge=0)
    accumulation_size: Annotated[int, Field(ge=1)] | Literal["epoch"] = Field(
        160, description="steps averaged per plateau check, or 'epoch'")


class OptimizerConfig(_Section):
    """Optimizer (S3.5)."""

    name: Literal["adan", "lamb", "adam", "adamw"] = "adan"
    lr: float = Field(0.005, gt=0.0)
    weight_decay: float = Field(0.001, ge=0.0)
    gradient_clip: float | None = Field(
        1.0, gt=0.0, description="global-norm clipping before the update; null: off"
    )
    schedule: ScheduleConfig = ScheduleConfig()


class LossConfig(_Section):
    """Weighted MSE + RMSE on masked irreps (S3.6), optionally blind to a constant c·S."""

    on_diagonal_weight: float = Field(1.0, ge=0.0)
    off_diagonal_weight: float = Field(4.0, ge=0.0)
    mse_weight: float = Field(1.0, ge=0.0)
    rmse_weight: float = Field(1.0, ge=0.0)
    loss_multiplier: float = Field(5.0, gt=0.0)
    gauge_invariant: bool = Field(
        False,
        description="compare prediction - c S with the target, c (eV) per structure solved in "
        "closed form over the masked elements: the loss does not see H -> H + c S (same states, "
        "E_F moved by c); whole records only (no data.partition)",
    )


class TrainConfig(_Section):
    """A whole training run."""

    output: Path = Field(Path("model"), description="run folder: model, checkpoints, metrics log")
    seed: int = Field(0, description="seed of the parameter initialisation")
    n_epochs: int = Field(100, ge=1)
    init_model: Path | None = Field(
        None,
        description="start from this trained model's parameters and scale-shift statistics "
        "instead of a fresh initialisation (fine-tuning on new data); its model section and "
        "species must equal this run's",
    )
    valid_every: int = Field(1, ge=1, description="validate every this many epochs")
    checkpoint_every: int = Field(1, ge=1, description="checkpoint every this many epochs")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    loss: LossConfig = LossConfig()

    @model_validator(mode="after")
    def _overlap_needs_whole_records(self) -> TrainConfig:
        if self.loss.gauge_invariant and self.data.partition is not None:
            raise ValueError("loss.gauge_invariant needs the overlap of whole records; "
                             "slices (data.partition) do not carry it")
        if self.model.atom_potential and self.data.partition is not None:
            raise ValueError("model.atom_potential needs the overlap of whole records; "
                             "slices (data.partition) do not carry it")
        return self


def load_config(path: Path) -> TrainConfig:
    """Read and validate a training YAML file; MLHError naming the file and the bad keys."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise MLHError(f"{path}: cannot read the configuration ({error})") from error
    if not isinstance(raw, dict):
        raise MLHError(f"{path}: the configuration must be a YAML mapping")
    try:
        config = TrainConfig.model_validate(raw)
    except ValidationError as error:
        raise MLHError(f"{path}: invalid configuration: {_problems(error)}") from error
    return _relative_to(config, path.parent)


def partition_config(**fields) -> PartitionConfig:
    """A validated PartitionConfig; MLHError listing the bad fields."""
    try:
        return PartitionConfig.model_validate(fields)
    except ValidationError as error:
        raise MLHError(f"invalid partition settings: {_problems(error)}") from error


def _problems(error: ValidationError) -> str:
    """One line naming every invalid field (dotted path) and what is wrong with it."""
    return "; ".join(
        ": ".join(filter(None, [".".join(str(p) for p in e["loc"]), e["msg"]])) for e in error.errors()
    )


def _relative_to(config: TrainConfig, folder: Path) -> TrainConfig:
    """Resolve the relative paths of `config` against the folder of its YAML file."""

    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else folder / p

    partition = config.data.partition
    if partition is not None and partition.folder is not None:
        partition = partition.model_copy(update={"folder": resolve(partition.folder)})
    data = config.data.model_copy(
        update={
            "train_path": [resolve(p) for p in config.data.train_path],
            "valid_path": [resolve(p) for p in config.data.valid_path],
            "extra_train_path": [resolve(p) for p in config.data.extra_train_path],
            "partition": partition,
        }
    )
    init_model = None if config.init_model is None else resolve(config.init_model)
    return config.model_copy(update={"data": data, "output": resolve(config.output),
                                     "init_model": init_model})


def _commented(model: BaseModel, indent: int = 0) -> list[str]:
    """YAML lines of `model`'s values, each field preceded by its description as a comment."""
    lines = []
    pad = " " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.description:
            lines.append(f"{pad}# {field.description}")
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:")
            lines.extend(_commented(value, indent + 2))
        else:
            plain = value.as_posix() if isinstance(value, Path) else value
            if isinstance(plain, list):
                plain = [p.as_posix() if isinstance(p, Path) else p for p in plain]
            dumped = yaml.safe_dump({name: plain}, default_flow_style=True, sort_keys=False)
            lines.append(pad + dumped.strip().removeprefix("{").removesuffix("}"))
    return lines


def write_template(path: Path) -> None:
    """Write the default training configuration with comments to `path` (atomic)."""
    header = [
        "# mlh training configuration. Defaults follow GEARS H (seed 001, listings S3.1-S3.6).",
        "# Lengths in Å, energies in eV; relative paths are relative to this file.",
    ]
    text = "\n".join(header + _commented(TrainConfig())) + "\n"
    with atomic_output(path) as tmp:
        tmp.write_text(text)
