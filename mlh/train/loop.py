"""The training loop (`mlh train`): epochs of padded batches, validation, checkpoints, metrics.

Run folder (`config.output`):
- `checkpoint.msgpack`: state after the last finished epoch; a re-run resumes from it;
- `metrics.csv`: one row per epoch (losses, matrix-element MAE in meV on-site / off-site /
  per species pair on the validation set, learning-rate scale, time, compilations);
- `model/`: the predictor with the lowest validation loss so far (`mlh.model.predictor`);
- `config.yaml`: the configuration used;
- `partitions/`: the slices of the records when `data.partition` is set (unless its
  `folder` says otherwise).
Training runs in float32 on JAX's default device. With `data.partition`, the records are
cut into augmented slices (`mlh.train.partition`) that are streamed from disk, and each step
takes `batch_size` slices per local device, data-parallel over the devices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml

from mlh.errors import MLHError
from mlh.file_output import atomic_output
from mlh.gpaw.settings import baseline_metadata, merged_settings
from mlh.model.config import DataConfig, TrainConfig
from mlh.model.layouts import OutputLayouts
from mlh.model.predictor import EnsemblePredictor, Predictor
from mlh.model.scale_shift import read_scale_shift
from mlh.model.targets import onsite_blocks, pair_blocks
from mlh.record.basis import check_model_basis
from mlh.record.io import record_files, record_provenance
from mlh.train.checkpoint import TrainState, load_checkpoint, save_checkpoint
from mlh.train.data import Sample, collate, load_samples, stack_batches
from mlh.train.statistics import SCALE_SHIFT_FILE, dataset_layouts, fit_from_samples

__all__ = ["split_files", "block_errors", "train"]


def split_files(data: DataConfig) -> tuple[list[Path], list[Path]]:
    """Training and validation record files: the validation split (valid_fraction of
    train_path) when no valid_path, then at most n_train training records, then every
    record of extra_train_path added to the training records."""
    train_files = record_files(data.train_path)
    if data.valid_path:
        valid_files = record_files(data.valid_path)
    else:
        order = np.random.default_rng(data.split_seed).permutation(len(train_files))
        n_valid = int(round(data.valid_fraction * len(train_files)))
        valid_files = [train_files[i] for i in sorted(order[:n_valid])]
        train_files = [train_files[i] for i in sorted(order[n_valid:])]
    train_files = train_files[: data.n_train]
    if data.extra_train_path:
        train_files += record_files(data.extra_train_path)
    valid_files = valid_files[: data.n_valid]
    if not train_files:
        raise MLHError("no training records left after the validation split")
    return train_files, valid_files


def block_errors(
    onsite: np.ndarray, offsite: np.ndarray, sample: Sample, layouts: OutputLayouts
) -> dict[str, np.ndarray]:
    """Absolute matrix-element errors (eV) of predicted irreps of the labelled atoms and the bonds,
    keyed 'onsite', 'offsite' and 'A-B'."""
    graph = sample.graph
    labelled = graph.species[: sample.labelled_atoms]
    si, sj = graph.species[graph.bond_i], graph.species[graph.bond_j]
    on_error = [
        np.abs(p - t)
        for p, t in zip(
            onsite_blocks(onsite[: len(labelled)], labelled, layouts),
            onsite_blocks(sample.onsite[: len(labelled)], labelled, layouts),
        )
    ]
    off_error = [
        np.abs(p - t)
        for p, t in zip(pair_blocks(offsite, si, sj, layouts), pair_blocks(sample.offsite, si, sj, layouts))
    ]
    names = layouts.species_names
    kinds = [(a, a) for a in labelled] + [tuple(sorted(p)) for p in zip(si, sj)]
    by_pair: dict[str, list[np.ndarray]] = {}
    for (a, b), error in zip(kinds, on_error + off_error):
        by_pair.setdefault(f"{names[a]}-{names[b]}", []).append(error)
    return {
        "onsite": np.concatenate(on_error),
        "offsite": np.concatenate(off_error),
        **{key: np.concatenate(parts) for key, parts in by_pair.items()},
    }


def _scale_shift(config: TrainConfig, layouts: OutputLayouts, samples: Sequence[Sample], log: Callable):
    """Statistics from `mlh analyze` beside the first training folder, else fitted now."""
    folder = Path(config.data.train_path[0])
    path = folder / SCALE_SHIFT_FILE if folder.is_dir() else folder.parent / SCALE_SHIFT_FILE
    if path.exists():
        stats = read_scale_shift(path)
        if tuple(stats.numbers.tolist()) == layouts.numbers and np.isclose(
            stats.shift_centres[-1], config.model.bond_centered.cutoff, atol=0.5
        ):
            log(f"scale-shift statistics from {path} ({stats.n_structures} structures)")
            return stats
        log(f"{path} does not match this model's species or cutoff; fitting the statistics again")
    return fit_from_samples(samples, layouts, config.model.bond_centered.cutoff)


def _start_model(config: TrainConfig, layouts: OutputLayouts) -> Predictor:
    """The trained model `config.init_model`, checked against this run's model and data.

    Raises:
        MLHError: an unreadable model, a committee, model settings that differ from
            `config.model`, or species or basis differing from the training records'.
    """
    path = config.init_model
    start = Predictor.load(path)
    if isinstance(start, EnsemblePredictor):
        raise MLHError(f"{path}: a committee cannot be fine-tuned; start from one of its members")
    if start.config != config.model:
        raise MLHError(f"{path}: its model settings differ from the configuration's model section; "
                       "fine-tuning needs the same architecture")
    if start.layouts.numbers != layouts.numbers or start.layouts.ghosts != layouts.ghosts:
        raise MLHError(f"{path}: species {start.layouts.species_names} differ from the training "
                       f"records' {layouts.species_names}")
    check_model_basis(layouts.basis, start.layouts.basis, np.asarray(layouts.numbers), str(path))
    return start


class _Steps:
    """Jitted training and prediction steps; counts compilations (distinct padded shapes)."""

    def __init__(self, predictor: Predictor, config: TrainConfig, n_train: int):
        import jax
        import optax

        from mlh.model.atom_potential import add_to_irreps
        from mlh.train.loss import irreps_loss
        from mlh.train.optim import make_optimizer

        kernel = predictor.kernel
        mesh = jax.sharding.Mesh(np.array(jax.local_devices()), ("device",))
        self.sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("device"))
        self.per_step = config.data.batch_size * (1 if config.data.partition is None else self.n_devices)
        self.optimizer = make_optimizer(config.optimizer, steps_per_epoch=-(-n_train // self.per_step))
        self.shapes: set[tuple] = set()
        self._programs: dict[tuple, object] = {}
        self.step_memory: dict[tuple, int] = {}

        def predict(params, batch, tables):
            onsite, offsite, potential = kernel.graph(
                params, tables, batch.species, batch.edge_center, batch.edge_neighbor,
                batch.edge_vector, batch.bond_i, batch.bond_j, batch.bond_vector,
            )
            if potential is None:
                return onsite, offsite
            return add_to_irreps(onsite, offsite, potential, batch.onsite_overlap,
                                 batch.offsite_overlap, batch.bond_i, batch.bond_j)

        def loss_fn(params, batch, tables):
            onsite, offsite = predict(params, batch, tables)
            return irreps_loss(onsite, offsite, batch, tables, config.loss)

        def train_step(params, opt_state, batch, tables):
            (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, tables)
            updates, opt_state = self.optimizer.update(grads, opt_state, params, value=loss)
            return optax.apply_updates(params, updates), opt_state, loss, parts

        def evaluate(params, batch, tables):
            onsite, offsite = predict(params, batch, tables)
            loss, parts = irreps_loss(onsite, offsite, batch, tables, config.loss)
            return onsite, offsite, loss, parts

        def parallel_step(params, opt_state, stacked, weights, tables):
            def mean_loss(params):
                losses, parts = jax.vmap(loss_fn, in_axes=(None, 0, None))(params, stacked, tables)
                return (weights * losses).sum() / weights.sum(), parts

            (loss, parts), grads = jax.value_and_grad(mean_loss, has_aux=True)(params)
            updates, opt_state = self.optimizer.update(grads, opt_state, params, value=loss)
            return optax.apply_updates(params, updates), opt_state, loss, parts

        self._train = jax.jit(train_step)
        self._evaluate = jax.jit(evaluate)
        self._train_parallel = jax.jit(parallel_step)

    @property
    def n_devices(self) -> int:
        return self.sharding.mesh.size

    def _count(self, kind: str, batch) -> tuple:
        key = (kind, *batch.species.shape, batch.edge_center.shape[-1], batch.bond_i.shape[-1])
        self.shapes.add(key)
        return key

    def _compiled(self, key: tuple, step, *args):
        """The step compiled ahead of time for this shape (cached), its memory noted."""
        if key not in self._programs:
            program = step.lower(*args).compile()
            stats = program.memory_analysis()
            if stats is not None:
                self.step_memory[key] = (stats.argument_size_in_bytes + stats.output_size_in_bytes
                                         - stats.alias_size_in_bytes + stats.temp_size_in_bytes)
            self._programs[key] = program
        return self._programs[key]

    @property
    def peak_step_memory_mib(self) -> float:
        """Largest XLA memory of a compiled training step (arguments + outputs - aliased +
        temporaries, per device; MiB): what one step needs on the device, without the
        compiler's own memory. NaN if the backend does not report it."""
        sizes = [v for (kind, *_), v in self.step_memory.items() if kind.startswith("train")]
        return round(max(sizes) / 2**20, 1) if sizes else float("nan")

    def train(self, params, opt_state, batch, tables):
        key = self._count("train", batch)
        return self._compiled(key, self._train, params, opt_state, batch, tables)(
            params, opt_state, batch, tables)

    def evaluate(self, params, batch, tables):
        self._count("evaluate", batch)
        return self._evaluate(params, batch, tables)

    def train_parallel(self, params, opt_state, batches: Sequence, tables):
        """One step on up to `n_devices` batches, one per device; the loss is their mean.

        Batches are padded to one shape and stacked; missing ones repeat the first with weight 0.
        """
        import jax

        weights = (np.arange(self.n_devices) < len(batches)).astype(np.float32)
        stacked = stack_batches([*batches, *[batches[0]] * (self.n_devices - len(batches))])
        key = self._count("train_parallel", stacked)
        stacked, weights = jax.device_put((stacked, weights), self.sharding)
        args = (params, opt_state, stacked, weights, tables)
        return self._compiled(key, self._train_parallel, *args)(*args)


def _validate(steps: _Steps, params, samples: Sequence[Sample], predictor: Predictor, config: TrainConfig, tables):
    """Validation loss and matrix-element MAE (meV) per kind and species pair."""
    data = config.data
    losses, errors = [], {}
    for start in range(0, len(samples), data.valid_batch_size):
        group = samples[start : start + data.valid_batch_size]
        batch = collate(group, data.atoms_pad_multiple, data.nl_pad_multiple)
        onsite, offsite, loss, _ = steps.evaluate(params, batch, tables)
        losses.append(float(loss))
        onsite, offsite = np.asarray(onsite, np.float64), np.asarray(offsite, np.float64)
        atom, bond = 0, 0
        for sample in group:
            n, b = sample.graph.n_atoms, sample.graph.n_bonds
            parts = block_errors(onsite[atom : atom + n], offsite[bond : bond + b], sample, predictor.layouts)
            for key, value in parts.items():
                errors.setdefault(key, []).append(value)
            atom, bond = atom + n, bond + b
    row = {"valid_loss": float(np.mean(losses))}
    for key, value in errors.items():
        row[f"mae_{key}_meV"] = 1000.0 * float(np.concatenate(value).mean())
    return row


def _write_metrics(history: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for row in history for k in row))
    lines = [",".join(keys)] + [",".join(str(row.get(k, "")) for k in keys) for row in history]
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def train(
    config: TrainConfig, progress: bool = True, log: Callable[[str], None] = print,
    time_limit: float | None = None,
) -> Predictor:
    """Train (or resume training) as configured; returns the best predictor (also saved).

    With `time_limit` (s), training stops after the first epoch at which the epochs logged so
    far (resumed runs included) have taken that long; the run validates and checkpoints that
    epoch, so a later call continues it.

    Raises:
        MLHError: bad data (unknown species, mismatched basis, missing files) or a
            corrupt checkpoint.
    """
    import jax
    from tqdm import tqdm

    from mlh.train.optim import learning_rate_scale

    data = config.data
    train_files, valid_files = split_files(data)
    layouts = dataset_layouts(train_files)
    config.model.check_output_degrees(layouts.onsite_degree, layouts.offsite_degree, "model.")
    start = None if config.init_model is None else _start_model(config, layouts)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    with atomic_output(output / "config.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    atom_cutoff = config.model.atom_centered.radial_basis.cutoff
    bond_cutoff = config.model.bond_centered.cutoff
    if data.partition is None:
        target = config.model.target
        overlap = config.loss.gauge_invariant or config.model.atom_potential
        train_samples = load_samples(train_files, layouts, atom_cutoff, bond_cutoff, target, overlap)
        valid_samples = load_samples(valid_files, layouts, atom_cutoff, bond_cutoff, target, overlap)
    else:
        from mlh.train.partition_io import partitioned_samples

        train_samples = partitioned_samples(train_files, layouts, config, log)
        valid_samples = partitioned_samples(valid_files, layouts, config, log)
    unit = "structures" if data.partition is None else "slices"
    log(f"{len(train_samples)} training and {len(valid_samples)} validation {unit}")
    metadata = {
        "gpaw": merged_settings({str(path): record_provenance(path)
                                 for path in [*train_files, *valid_files]}),
        "n_train": len(train_samples),
        "n_valid": len(valid_samples),
    }
    if config.model.target == "correction":
        metadata["baseline"] = baseline_metadata({str(path): record_provenance(path)
                                                  for path in [*train_files, *valid_files]})
    if data.partition is not None:
        metadata["partition"] = data.partition.model_dump(mode="json", exclude={"folder"})
    if start is None:
        stats = _scale_shift(config, layouts, train_samples, log)
        initial = Predictor.initialise(config.model, layouts, stats, config.seed)
    else:
        initial = Predictor(start.config, start.layouts, start.stats, start.params, {})  # a new model
        log(f"starting from {config.init_model} (its parameters and scale-shift statistics)")
        metadata["init_model"] = start.provenance
    predictor = initial.with_params(initial.params, metadata)
    tables = predictor.tables()
    steps = _Steps(predictor, config, len(train_samples))
    devices = f"{steps.n_devices} x " if data.partition is not None else ""
    log(f"{predictor.n_parameters} parameters; device {devices}{jax.devices()[0].platform}")

    state = TrainState(predictor.params, steps.optimizer.init(predictor.params), 0, [])
    checkpoint = output / "checkpoint.msgpack"
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, state)
        log(f"resuming after epoch {state.epoch}")
    best = min((row["valid_loss"] for row in state.history if "valid_loss" in row), default=np.inf)

    params, opt_state, history = state.params, state.opt_state, list(state.history)
    per_step = steps.per_step
    spent = sum(row["epoch_seconds"] for row in history)
    first_epoch = config.n_epochs + 1 if time_limit is not None and spent >= time_limit else state.epoch + 1
    for epoch in range(first_epoch, config.n_epochs + 1):
        start = time.perf_counter()
        rng = np.random.default_rng([data.split_seed, epoch])
        order = rng.permutation(len(train_samples))
        batches = range(0, len(order), per_step)
        losses = []
        for first in tqdm(batches, desc=f"epoch {epoch}", disable=None if progress else True, leave=False):
            group = [train_samples[i] for i in order[first : first + per_step]]
            if data.partition is None:
                batch = collate(group, data.atoms_pad_multiple, data.nl_pad_multiple, data.bond_fraction, rng)
                params, opt_state, loss, _ = steps.train(params, opt_state, batch, tables)
            else:
                parts = [
                    collate(group[k : k + data.batch_size], data.atoms_pad_multiple, data.nl_pad_multiple,
                            data.bond_fraction, rng)
                    for k in range(0, len(group), data.batch_size)
                ]
                params, opt_state, loss, _ = steps.train_parallel(params, opt_state, parts, tables)
            losses.append(float(loss))
        row = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "lr_scale": learning_rate_scale(opt_state),
            "epoch_seconds": round(time.perf_counter() - start, 3),
            "compilations": len(steps.shapes),
            "step_memory_mib": steps.peak_step_memory_mib,
        }
        spent += row["epoch_seconds"]
        out_of_time = time_limit is not None and spent >= time_limit
        if valid_samples and (epoch % config.valid_every == 0 or epoch == config.n_epochs or out_of_time):
            row.update(_validate(steps, params, valid_samples, predictor, config, tables))
            if row["valid_loss"] < best:
                best = row["valid_loss"]
                predictor.with_params(params, {**metadata, "best": row}).save(output / "model")
        history.append(row)
        log(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
        if epoch % config.checkpoint_every == 0 or epoch == config.n_epochs or out_of_time:
            save_checkpoint(TrainState(params, opt_state, epoch, history), checkpoint)
            _write_metrics(history, output / "metrics.csv")
        if out_of_time:
            log(f"time limit of {time_limit:g} s reached after epoch {epoch}")
            break
    if not valid_samples:
        predictor.with_params(params, {**metadata, "last": history[-1] if history else {}}).save(
            output / "model"
        )
    return Predictor.load(output / "model")
