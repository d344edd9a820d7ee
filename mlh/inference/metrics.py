"""Accuracy of a predicted Hamiltonian record against a reference record.

Two levels of one structure, pure functions returning xarray Datasets (energies in eV):

* `matrix_element_errors`: absolute errors of the stored real-space H(R) blocks of one
  structure, overall, on-site vs off-site, per species pair and per species, with a
  histogram of the errors on log-spaced bins so that distributions and CDFs can be
  plotted without keeping every element.
* `eigenvalue_errors`: errors of the generalized eigenvalues of (H(k), S(k)) near the
  Fermi level and the relative L1/L2 errors of the whole spectrum (Xia et al., ICML 2025).

Many structures: mlh.inference.evaluation (`evaluate_pairs`, totals weighted by element
counts, and `plot_evaluation`, as GEARS H figure 1).

Blocks are matched by (pair_i, pair_j, pair_shift); both records store each unordered
pair once in canonical orientation (`mlh.record.hamiltonian.canonical_pair_mask`). A block stored in
only one of the two records is compared against a block of zeros. All spin channels
count.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.linalg
import xarray as xr
from ase.data import chemical_symbols

from mlh.errors import MLHError
from mlh.record.hamiltonian import HamiltonianRecord
from mlh.record.io import labelled_variable as _var

__all__ = [
    "ERROR_BIN_EDGES", "matrix_element_errors", "eigenvalue_errors", "gauge_shift", "gauge_aligned",
]

ERROR_BIN_EDGES = np.logspace(-8, 1, 91)
"""(91,) log-spaced edges (eV) of the absolute-error histogram, 10 bins per decade."""

POSITION_TOLERANCE = 1e-6
"""Largest position / cell difference (Å) for two records to be the same structure."""

_BLOCK_KINDS = ["onsite", "offsite"]


# ------------------------------------------------------------------ helpers
def _check_comparable(predicted: HamiltonianRecord, reference: HamiltonianRecord) -> None:
    """Raise MLHError unless both records hold H for the same atoms, cell and basis."""
    for name, record in (("reference", reference), ("predicted", predicted)):
        if not record.has_hamiltonian:
            raise MLHError(f"the {name} record is overlap-only: it has no Hamiltonian")
    if not np.array_equal(predicted.numbers, reference.numbers):
        raise MLHError(
            f"predicted and reference records have different atoms: atomic numbers "
            f"{predicted.numbers.tolist()} vs {reference.numbers.tolist()}"
        )
    if not np.array_equal(predicted.ghost, reference.ghost):
        raise MLHError("predicted and reference records have different ghost atoms")
    for name in ("positions", "cell"):
        deviation = np.abs(getattr(predicted, name) - getattr(reference, name)).max()
        if deviation > POSITION_TOLERANCE:
            raise MLHError(
                f"predicted and reference records have different {name} "
                f"(largest difference {deviation:.3g} Å)"
            )
    if not np.array_equal(predicted.pbc, reference.pbc):
        raise MLHError("predicted and reference records have different periodic directions")
    if predicted.basis.species != reference.basis.species:
        raise MLHError(
            f"predicted and reference records have different basis sets "
            f"({predicted.basis.name!r} vs {reference.basis.name!r})"
        )
    if predicted.n_spins != reference.n_spins:
        raise MLHError(
            f"predicted and reference records have {predicted.n_spins} and "
            f"{reference.n_spins} spin channels"
        )


def _pair_keys(record: HamiltonianRecord) -> np.ndarray:
    """(n_pairs, 5) integer rows (i, j, R) identifying each stored pair."""
    return np.column_stack([record.pair_i, record.pair_j, record.pair_shift]).astype(np.int64)


def _scatter_pairs(
    record: HamiltonianRecord, target: np.ndarray, target_offsets: np.ndarray, n_values: int,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """H_pair of `record` (or other (channels, n_pair_values) `values` in its pair layout)
    placed into the value layout of the union pairs.

    Args:
        record: record whose pair p becomes union pair target[p].
        target: (n_pairs,) union index of each pair of `record`.
        target_offsets: (n_union + 1,) start of each union block in the flat layout.
        n_values: total number of union pair values.
        values: what to place; default record.H_pair.

    Returns:
        (channels, n_values) values, zero for union pairs absent from `record`.
    """
    values = record.H_pair if values is None else values
    sizes = np.diff(record.pair_value_offsets)
    block = np.repeat(np.arange(record.n_pairs), sizes)
    local = np.arange(record.n_pair_values) - record.pair_value_offsets[block]
    out = np.zeros((values.shape[0], n_values))
    out[:, target_offsets[target[block]] + local] = values
    return out


def _union_layout(predicted: HamiltonianRecord, reference: HamiltonianRecord):
    """The pairs stored in either record and a scatter into their flat value layout.

    Returns:
        atoms: (n_union, 2) atoms (i, j) of each union pair.
        offsets: (n_union + 1,) start of each union block along the value axis.
        to_union_predicted, to_union_reference: functions placing a (channels,
            n_pair_values) array in that record's pair layout (default its H_pair) into
            the union layout, zero for pairs the record does not store.
    """
    pred_keys, ref_keys = _pair_keys(predicted), _pair_keys(reference)
    union, inverse = np.unique(
        np.concatenate([pred_keys, ref_keys]).reshape(-1, 5), axis=0, return_inverse=True
    )
    inverse = inverse.ravel()
    counts = reference.orbital_counts
    offsets = np.concatenate([[0], np.cumsum(counts[union[:, 0]] * counts[union[:, 1]])])
    offsets = offsets.astype(np.int64)

    def scatter_from(record: HamiltonianRecord, target: np.ndarray):
        return lambda values=None: _scatter_pairs(record, target, offsets, int(offsets[-1]), values)

    return (union[:, :2], offsets, scatter_from(predicted, inverse[: len(pred_keys)]),
            scatter_from(reference, inverse[len(pred_keys):]))


def _offsite_errors(
    predicted: HamiltonianRecord, reference: HamiltonianRecord
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Absolute errors of all pair blocks stored in either record.

    Returns:
        errors: (n_spins, n_values) |H_pred - H_ref| (eV) in the union pair layout.
        offsets: (n_union + 1,) start of each union block along the value axis.
        atoms: (n_union, 2) atoms (i, j) of each union pair.
    """
    atoms, offsets, from_predicted, from_reference = _union_layout(predicted, reference)
    return np.abs(from_predicted() - from_reference()), offsets, atoms


def _block_sums(errors: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the errors of each block, over all spin channels.

    Args:
        errors: (n_spins, n_values) absolute errors (eV).
        offsets: (n_blocks + 1,) start of each block along the value axis.

    Returns:
        (n_blocks,) error sums (eV) and (n_blocks,) element counts.
    """
    per_value = errors.sum(axis=0)
    sums = np.add.reduceat(per_value, offsets[:-1]) if len(per_value) else np.zeros(0)
    return sums, np.diff(offsets) * errors.shape[0]


def _grouped_mae(
    codes: np.ndarray, sums: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAE per distinct integer code, codes sorted ascending.

    Args:
        codes: (n_blocks,) group code of each block.
        sums: (n_blocks,) sum of absolute errors of each block (eV).
        counts: (n_blocks,) number of elements of each block.

    Returns:
        (n_groups,) codes, (n_groups,) MAE (eV), (n_groups,) element counts.
    """
    unique, group = np.unique(codes, return_inverse=True)
    group_counts = np.bincount(group, weights=counts, minlength=len(unique))
    group_sums = np.bincount(group, weights=sums, minlength=len(unique))
    return unique, group_sums / group_counts, group_counts.astype(np.int64)


def _species_pair_label(code: int) -> str:
    """Species-pair label "A-B" of the code 1000 * Z_a + Z_b."""
    return f"{chemical_symbols[code // 1000]}-{chemical_symbols[code % 1000]}"


def _mean(errors: np.ndarray) -> float:
    """Mean of `errors`, NaN when there are none."""
    return float(errors.mean()) if errors.size else np.nan


def _histogram(errors: np.ndarray) -> np.ndarray:
    """Counts of `errors` in ERROR_BIN_EDGES, out-of-range values in the end bins."""
    clipped = np.clip(errors.ravel(), ERROR_BIN_EDGES[0], ERROR_BIN_EDGES[-1])
    return np.histogram(clipped, bins=ERROR_BIN_EDGES)[0]


def _histogram_coords() -> dict[str, xr.Variable]:
    """Coordinates block_kind and error_bin (centres, lower and upper edges in eV)."""
    lower, upper = ERROR_BIN_EDGES[:-1], ERROR_BIN_EDGES[1:]
    return {
        "block_kind": ("block_kind", _BLOCK_KINDS),
        "error_bin": _var("error_bin", np.sqrt(lower * upper),
                          "geometric centre of error bin", "eV"),
        "error_bin_lower": _var("error_bin", lower, "lower edge of error bin", "eV"),
        "error_bin_upper": _var("error_bin", upper, "upper edge of error bin", "eV"),
    }


# -------------------------------------------------------- matrix elements
def matrix_element_errors(
    predicted: HamiltonianRecord, reference: HamiltonianRecord
) -> xr.Dataset:
    """Absolute errors of the real-space H blocks of one structure.

    Every matrix element of every stored block counts once per spin channel: the
    on-site blocks (i, i, 0) and the pair blocks (i, j, R) stored in either record (a
    block missing from one record counts as zeros there).

    Args:
        predicted: predicted record (H in eV).
        reference: reference record of the same atoms, positions, cell and basis.

    Returns:
        Dataset (energies in eV) with scalars `mae_all`, `mae_onsite`, `mae_offsite`
        (NaN without pairs), `max_abs_error`, `n_elements_onsite`, `n_elements_offsite`;
        `mae_species_pair` and `n_elements_species_pair` over `species_pair` ("Se-W",
        atomic numbers ascending; on-site blocks of species a count under "a-a");
        `mae_onsite_species` and `n_elements_species` over `species` (symbols); and
        `error_histogram` (block_kind: onsite/offsite, error_bin): counts of absolute
        errors per bin of ERROR_BIN_EDGES (coordinates `error_bin_lower`,
        `error_bin_upper`: edges; `error_bin`: geometric centre). Errors below the first
        edge, zeros included, count in the first bin, those above the last edge in the
        last bin, so the counts sum to the numbers of elements.

    Raises:
        MLHError: a record has no H, or the records differ in atoms, positions, cell,
            periodicity, basis or number of spin channels.
    """
    _check_comparable(predicted, reference)
    offsite, pair_offsets, pair_atoms = _offsite_errors(predicted, reference)
    onsite = np.abs(predicted.H_onsite - reference.H_onsite)

    numbers = reference.numbers
    pair_z = np.sort(numbers[pair_atoms], axis=1)
    pair_codes = 1000 * pair_z[:, 0] + pair_z[:, 1]
    pair_sums, pair_counts = _block_sums(offsite, pair_offsets)
    onsite_sums, onsite_counts = _block_sums(onsite, reference.onsite_value_offsets)
    codes, mae_pair, n_pair = _grouped_mae(
        np.concatenate([pair_codes, 1001 * numbers]),
        np.concatenate([pair_sums, onsite_sums]),
        np.concatenate([pair_counts, onsite_counts]),
    )
    species, mae_species, n_species = _grouped_mae(numbers, onsite_sums, onsite_counts)
    both = np.concatenate([onsite.ravel(), offsite.ravel()])

    data = {
        "mae_all": _var((), _mean(both), "mean absolute error of all H elements", "eV"),
        "mae_onsite": _var((), _mean(onsite), "mean absolute error of on-site H elements",
                           "eV"),
        "mae_offsite": _var((), _mean(offsite), "mean absolute error of pair H elements",
                            "eV"),
        "max_abs_error": _var((), float(both.max()), "largest absolute H error", "eV"),
        "n_elements_onsite": _var((), onsite.size, "number of on-site H elements", "1"),
        "n_elements_offsite": _var((), offsite.size, "number of pair H elements", "1"),
        "mae_species_pair": _var("species_pair", mae_pair,
                                 "mean absolute error of H elements per species pair", "eV"),
        "n_elements_species_pair": _var("species_pair", n_pair,
                                        "number of H elements per species pair", "1"),
        "mae_onsite_species": _var("species", mae_species,
                                   "mean absolute error of on-site H elements per species",
                                   "eV"),
        "n_elements_species": _var("species", n_species,
                                   "number of on-site H elements per species", "1"),
        "error_histogram": _var(("block_kind", "error_bin"),
                                np.stack([_histogram(onsite), _histogram(offsite)]),
                                "number of H elements per absolute-error bin", "1"),
    }
    coords = {
        "species_pair": ("species_pair", [_species_pair_label(c) for c in codes]),
        "species": ("species", [chemical_symbols[z] for z in species]),
        **_histogram_coords(),
    }
    return xr.Dataset(data, coords=coords)


# ------------------------------------------------------------ gauge
def gauge_shift(predicted: HamiltonianRecord, reference: HamiltonianRecord) -> float:
    """The constant c (eV) of the best alignment H_pred - c S ~ H_ref, in closed form.

    H and H + c S have the same states (E_F moves by c), so c is the part of an error that
    no physics sees: c = sum (H_pred - H_ref) S / sum S S over every stored element and
    spin channel (on-site and pair blocks of either record; S is the structure's).
    """
    _check_comparable(predicted, reference)
    _, _, from_predicted, from_reference = _union_layout(predicted, reference)
    difference = from_predicted() - from_reference()
    # S is the structure's: the reference's where it stores the pair, else the prediction's
    S = from_reference(reference.S_pair[None, :])[0]
    S = np.where(S == 0.0, from_predicted(predicted.S_pair[None, :])[0], S)
    onsite = predicted.H_onsite - reference.H_onsite
    numerator = float(np.sum(difference @ S) + np.sum(onsite @ reference.S_onsite))
    denominator = predicted.n_spins * float(S @ S + reference.S_onsite @ reference.S_onsite)
    return numerator / denominator


def gauge_aligned(record: HamiltonianRecord, shift: float) -> HamiltonianRecord:
    """The record with H -> H - shift * S (eV): the same states, E_F lower by `shift`."""
    return replace(record, H_pair=record.H_pair - shift * record.S_pair,
                   H_onsite=record.H_onsite - shift * record.S_onsite)


# ------------------------------------------------------------ eigenvalues
def _eigenvalues(record: HamiltonianRecord, kpoints: list[np.ndarray | None]) -> np.ndarray:
    """(n_spins, n_kpoints, n_orbitals) ascending eigenvalues of (H(k), S(k)) in eV."""
    out = np.empty((record.n_spins, len(kpoints), record.n_orbitals))
    for q, k in enumerate(kpoints):
        overlap = record.overlap_k(k).toarray()
        for s in range(record.n_spins):
            hamiltonian = record.hamiltonian_k(k, spin=s).toarray()
            try:
                out[s, q] = scipy.linalg.eigh(hamiltonian, overlap, eigvals_only=True)
            except np.linalg.LinAlgError as err:
                raise MLHError(f"cannot diagonalize (H(k), S(k)) at k = {k}: {err}") from None
    return out


def _fermi_level(reference: HamiltonianRecord, eigenvalues: np.ndarray) -> float:
    """The reference's Fermi level (eV), or the HOMO/LUMO midpoint of `eigenvalues`.

    Args:
        reference: reference record (labels.fermi_level or labels.n_electrons).
        eigenvalues: (n_spins, n_kpoints, n_bands) reference eigenvalues (eV).
    """
    labels = reference.labels
    if labels.fermi_level is not None:
        return float(labels.fermi_level)
    if labels.n_electrons is None:
        raise MLHError("the reference record has neither a Fermi level nor an electron count")
    if reference.n_spins != 1:
        raise MLHError(
            "the reference record has no Fermi level and is spin-polarized: the "
            "electron count alone does not fix the occupations"
        )
    n_occupied = int(np.ceil(labels.n_electrons / 2 - 1e-9))
    n_bands = eigenvalues.shape[-1]
    if not 0 < n_occupied < n_bands:
        raise MLHError(
            f"the reference record has no Fermi level, and {labels.n_electrons} electrons "
            f"fill {n_occupied} of {n_bands} bands: no HOMO/LUMO gap to put it in"
        )
    homo = eigenvalues[..., n_occupied - 1].max()
    lumo = eigenvalues[..., n_occupied].min()
    return float((homo + lumo) / 2)


def _spectrum_relative_error(predicted: np.ndarray, reference: np.ndarray, order: int) -> float:
    """||E_pred - E_ref||_order^2 / ||E_ref||_order^2 over all eigenvalues (Xia et al.)."""
    difference = np.linalg.norm((predicted - reference).ravel(), ord=order)
    return float(difference**2 / np.linalg.norm(reference.ravel(), ord=order) ** 2)


def eigenvalue_errors(
    predicted: HamiltonianRecord,
    reference: HamiltonianRecord,
    kpoints: np.ndarray | None = None,
    window: float = 5.0,
) -> xr.Dataset:
    """Errors of the generalized eigenvalues of (H(k), S(k)) of one structure.

    Each record is diagonalized with its own H(k) and S(k) (dense, scipy.linalg.eigh);
    eigenvalues are sorted ascending and compared band by band, at every k-point and
    spin channel.

    The spectrum errors follow Xia et al., "Learning the Electronic Hamiltonian of Large
    Atomic Structures" (ICML 2025), figure 5: "The relative L1/L2 errors in the
    eigenvalue spectrum, computed as (||E^pred - E^GT||_norm^2) / (||E^GT||_norm^2)
    (norm = 1, 2) where E is the vector of eigenvalues". E here holds all eigenvalues of
    all k-points and spins. The ratio depends on the energy zero (the reference's,
    e.g. GPAW's, not the Fermi level).

    Args:
        predicted: predicted record (H in eV).
        reference: reference record of the same structure; its `labels.fermi_level`,
            or else `labels.n_electrons` (spin-paired, 2 electrons per band; the Fermi
            level is then midway between HOMO and LUMO over the k-points evaluated),
            sets the Fermi level E_F.
        kpoints: (n_kpoints, 3) reduced k-points, or None for Γ only (real matrices).
        window: half width (eV) of the window E_F ± window of reference eigenvalues
            counted in the windowed errors.

    Returns:
        Dataset (energies in eV) with `eigenvalue_mae_window`,
        `eigenvalue_max_error_window` (NaN when the window is empty),
        `n_eigenvalues_window`, `spectrum_relative_l1`, `spectrum_relative_l2`,
        `fermi_level`, `reference_eigenvalues` and `predicted_eigenvalues` over
        (spin, kpoint, band), `kpoints` (kpoint, xyz), and attrs `window` (eV).

    Raises:
        MLHError: records not comparable (see `matrix_element_errors`), S(k) not
            positive definite, or no way to fix the Fermi level.
    """
    _check_comparable(predicted, reference)
    if kpoints is None:
        kpoint_list, kpoint_array = [None], np.zeros((1, 3))
    else:
        kpoint_array = np.asarray(kpoints, dtype=float)
        if kpoint_array.ndim != 2 or kpoint_array.shape[1] != 3:
            raise MLHError(f"kpoints must have shape (n_kpoints, 3), got {kpoint_array.shape}")
        kpoint_list = list(kpoint_array)
    eps_ref = _eigenvalues(reference, kpoint_list)
    eps_pred = _eigenvalues(predicted, kpoint_list)
    fermi_level = _fermi_level(reference, eps_ref)
    in_window = np.abs(eps_ref - fermi_level) <= window
    window_errors = np.abs(eps_pred - eps_ref)[in_window]
    max_window = float(window_errors.max()) if window_errors.size else np.nan

    dims = ("spin", "kpoint", "band")
    data = {
        "eigenvalue_mae_window": _var((), _mean(window_errors),
                                      "mean absolute eigenvalue error within E_F ± window",
                                      "eV"),
        "eigenvalue_max_error_window": _var((), max_window,
                                            "largest eigenvalue error within E_F ± window",
                                            "eV"),
        "n_eigenvalues_window": _var((), window_errors.size,
                                     "number of reference eigenvalues within E_F ± window",
                                     "1"),
        "spectrum_relative_l1": _var((), _spectrum_relative_error(eps_pred, eps_ref, 1),
                                     "relative L1 error of the spectrum (Xia et al. 2025)",
                                     "1"),
        "spectrum_relative_l2": _var((), _spectrum_relative_error(eps_pred, eps_ref, 2),
                                     "relative L2 error of the spectrum (Xia et al. 2025)",
                                     "1"),
        "fermi_level": _var((), fermi_level, "Fermi level of the reference", "eV"),
        "reference_eigenvalues": _var(dims, eps_ref, "reference eigenvalues", "eV"),
        "predicted_eigenvalues": _var(dims, eps_pred, "predicted eigenvalues", "eV"),
        "kpoints": _var(("kpoint", "xyz"), kpoint_array, "reduced k-point", "1"),
    }
    return xr.Dataset(data, coords={"xyz": ["x", "y", "z"]}, attrs={"window": window})
