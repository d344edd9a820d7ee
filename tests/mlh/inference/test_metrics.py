"""Tests of mlh.inference.metrics on synthetic records (no GPAW)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mlh.errors import MLHError
from mlh.inference.evaluation import evaluate_pairs, plot_evaluation
from mlh.inference.metrics import (
    ERROR_BIN_EDGES,
    eigenvalue_errors,
    gauge_aligned,
    gauge_shift,
    matrix_element_errors,
)
from mlh.record.basis import Basis, SpeciesBasis
from mlh.record.hamiltonian import HamiltonianRecord, Labels
from tests.synthetic import random_record

KPOINTS = np.array([[0.0, 0.0, 0.0], [0.25, 0.1, 0.0], [0.5, 0.5, 0.5]])


def small_record(seed: int, n_spins: int = 1) -> HamiltonianRecord:
    """3 atoms in a 6 Å cell: few pairs, S(k) positive definite."""
    return random_record(seed, n_atoms=3, cell_length=6.0, n_spins=n_spins)


def without_pair(record: HamiltonianRecord, pair: int) -> HamiltonianRecord:
    """`record` with stored pair `pair` removed."""
    start, stop = record.pair_value_offsets[pair], record.pair_value_offsets[pair + 1]
    keep = np.arange(record.n_pairs) != pair
    values = np.r_[0:start, stop:record.n_pair_values]
    return replace(record, pair_i=record.pair_i[keep], pair_j=record.pair_j[keep],
                   pair_shift=record.pair_shift[keep], S_pair=record.S_pair[values],
                   H_pair=record.H_pair[:, values])


def species_pair_label(record: HamiltonianRecord, a: int, b: int) -> str:
    symbols = {1: "H", 8: "O", 74: "W"}
    za, zb = sorted((int(record.numbers[a]), int(record.numbers[b])))
    return f"{symbols[za]}-{symbols[zb]}"


def species_pair_count(record: HamiltonianRecord, label: str) -> int:
    """Elements (all spins) of all stored blocks, on-site included, of species pair `label`."""
    n = record.orbital_counts
    count = sum(n[i] * n[j] for i, j in zip(record.pair_i, record.pair_j)
                if species_pair_label(record, i, j) == label)
    count += sum(n[a] ** 2 for a in range(record.n_atoms)
                 if species_pair_label(record, a, a) == label)
    return count * record.n_spins


def test_identical_records_have_zero_errors():
    record = small_record(0)
    elements = matrix_element_errors(record, record)
    for name in ("mae_all", "mae_onsite", "mae_offsite", "max_abs_error"):
        assert elements[name].item() == 0.0
        assert elements[name].attrs["units"] == "eV" and elements[name].attrs["long_name"]
    assert np.all(elements.mae_species_pair == 0) and np.all(elements.mae_onsite_species == 0)
    assert elements.n_elements_onsite.item() == record.n_onsite_values
    assert elements.n_elements_offsite.item() == record.n_pair_values
    histogram = elements.error_histogram
    assert histogram.sel(block_kind="onsite", error_bin=histogram.error_bin[0]) \
        == record.n_onsite_values
    assert histogram.sum().item() == record.n_onsite_values + record.n_pair_values
    assert np.allclose(np.append(elements.error_bin_lower, elements.error_bin_upper[-1]),
                       ERROR_BIN_EDGES)

    eigen = eigenvalue_errors(record, record, kpoints=KPOINTS)
    assert eigen.eigenvalue_mae_window.item() == 0.0
    assert eigen.n_eigenvalues_window.item() > 0
    assert eigen.spectrum_relative_l1.item() == 0.0 == eigen.spectrum_relative_l2.item()
    assert eigen.reference_eigenvalues.dims == ("spin", "kpoint", "band")
    assert eigen.fermi_level.item() == record.labels.fermi_level


def test_constant_delta_on_one_pair_block():
    reference = small_record(0, n_spins=2)
    pair, delta = 3, 0.25
    start, stop = reference.pair_value_offsets[pair], reference.pair_value_offsets[pair + 1]
    h_pair = reference.H_pair.copy()
    h_pair[:, start:stop] -= delta
    errors = matrix_element_errors(replace(reference, H_pair=h_pair), reference)

    size = 2 * (stop - start)  # both spin channels
    n_offsite, n_onsite = 2 * reference.n_pair_values, 2 * reference.n_onsite_values
    assert errors.n_elements_offsite.item() == n_offsite
    assert errors.mae_offsite.item() == pytest.approx(delta * size / n_offsite, rel=1e-12)
    assert errors.mae_all.item() == pytest.approx(delta * size / (n_offsite + n_onsite),
                                                  rel=1e-12)
    assert errors.mae_onsite.item() == 0.0
    assert errors.max_abs_error.item() == pytest.approx(delta)
    label = species_pair_label(reference, reference.pair_i[pair], reference.pair_j[pair])
    expected = delta * size / species_pair_count(reference, label)
    assert errors.mae_species_pair.sel(species_pair=label).item() == pytest.approx(expected)
    assert errors.mae_species_pair.drop_sel(species_pair=label).sum().item() == 0.0
    offsite = errors.error_histogram.sel(block_kind="offsite")
    assert offsite.sel(error_bin=delta, method="nearest").item() == size


def test_missing_pair_counts_as_zeros_both_ways():
    reference = small_record(1)
    pair = 2
    values = reference.H_pair[:, reference.pair_value_offsets[pair]:
                              reference.pair_value_offsets[pair + 1]]
    partial = without_pair(reference, pair)
    for predicted, target in ((partial, reference), (reference, partial)):
        errors = matrix_element_errors(predicted, target)
        assert errors.n_elements_offsite.item() == reference.n_pair_values
        assert errors.mae_offsite.item() == pytest.approx(
            np.abs(values).sum() / reference.n_pair_values, rel=1e-12)
        assert errors.max_abs_error.item() == pytest.approx(np.abs(values).max())


@pytest.mark.parametrize("kpoints", [None, KPOINTS])
def test_eigenvalues_shift_by_c_when_h_gains_c_times_s(kpoints):
    reference = small_record(0)
    c = 0.37
    shifted = replace(reference, H_pair=reference.H_pair + c * reference.S_pair,
                      H_onsite=reference.H_onsite + c * reference.S_onsite)
    eigen = eigenvalue_errors(shifted, reference, kpoints=kpoints, window=1e3)

    eps = eigen.reference_eigenvalues.values
    assert np.allclose(eigen.predicted_eigenvalues - eps, c, atol=1e-9)
    assert eigen.n_eigenvalues_window.item() == eps.size
    assert eigen.eigenvalue_mae_window.item() == pytest.approx(c, abs=1e-9)
    assert eigen.eigenvalue_max_error_window.item() == pytest.approx(c, abs=1e-9)
    # Xia et al. (2025): ||E_pred - E_ref||_p^2 / ||E_ref||_p^2
    assert eigen.spectrum_relative_l1.item() == pytest.approx(
        (c * eps.size / np.abs(eps).sum()) ** 2, rel=1e-8)
    assert eigen.spectrum_relative_l2.item() == pytest.approx(
        c**2 * eps.size / (eps**2).sum(), rel=1e-8)


def test_gauge_alignment_removes_c_times_s_and_nothing_else():
    reference = small_record(0)
    c = 0.37
    shifted = gauge_aligned(reference, -c)  # H + c S
    assert gauge_shift(shifted, reference) == pytest.approx(c, abs=1e-12)
    noisy = replace(shifted, H_onsite=shifted.H_onsite + 1e-3 * np.sign(shifted.H_onsite))
    names, predictions, references = ["shifted", "noisy"], [shifted, noisy], [reference, reference]
    dataset = evaluate_pairs(zip(names, predictions, references), window=1e3)
    shift = dataset["gauge_shift"].values
    assert shift[0] == pytest.approx(c, abs=1e-12) and abs(shift[1] - c) < 1e-3
    aligned = dataset["mae_all_aligned_per_structure"].values
    assert aligned[0] < 1e-12 and dataset["mae_all_per_structure"].values[0] > 1e-3
    assert dataset["eigenvalue_mae_window_aligned_per_structure"].values[0] < 1e-9
    # the aligned error of the noisy record is its noise, not c
    assert 1e-5 < aligned[1] < 1.1e-3
    assert float(dataset["mae_all_aligned"]) == pytest.approx(
        np.average(aligned, weights=dataset.n_elements_onsite + dataset.n_elements_offsite))


def test_window_selects_eigenvalues_near_fermi_level():
    reference = small_record(0)
    shifted = replace(reference, H_onsite=reference.H_onsite + 0.1 * reference.S_onsite,
                      H_pair=reference.H_pair + 0.1 * reference.S_pair)
    eigen = eigenvalue_errors(shifted, reference, window=2.0)
    eps = eigen.reference_eigenvalues.values
    assert eigen.n_eigenvalues_window.item() == np.sum(np.abs(eps + 3.0) <= 2.0)


def test_fermi_level_from_electron_count_or_error():
    reference = small_record(0)
    counted = replace(reference, labels=Labels(n_electrons=8.0))
    eigen = eigenvalue_errors(counted, counted)
    eps = eigen.reference_eigenvalues.values[0, 0]
    assert eigen.fermi_level.item() == pytest.approx((eps[3] + eps[4]) / 2)
    with pytest.raises(MLHError, match="neither a Fermi level nor an electron count"):
        eigenvalue_errors(reference, replace(reference, labels=Labels()))


def test_mismatched_records_raise():
    reference = small_record(0)
    other_atoms = small_record(2)
    assert not np.array_equal(reference.numbers, other_atoms.numbers)
    with pytest.raises(MLHError, match="different atoms"):
        matrix_element_errors(other_atoms, reference)
    moved = replace(reference, positions=reference.positions + 0.01)
    with pytest.raises(MLHError, match="different positions"):
        matrix_element_errors(moved, reference)
    species = tuple(SpeciesBasis(s.number, s.ls, tuple(r + 0.5 for r in s.rcuts), s.labels)
                    for s in reference.basis.species)
    with pytest.raises(MLHError, match="different basis"):
        eigenvalue_errors(replace(reference, basis=Basis("other", species)), reference)
    overlap_only = replace(reference, H_pair=None, H_onsite=None)
    with pytest.raises(MLHError, match="reference record is overlap-only"):
        matrix_element_errors(reference, overlap_only)
    with pytest.raises(MLHError, match="b: predicted and reference records have different"):
        evaluate_pairs([("a", reference, reference), ("b", moved, reference)])


def test_evaluate_pairs_totals_are_element_weighted_means(tmp_path):
    rng = np.random.default_rng(7)
    references = [small_record(0), small_record(2, n_spins=1)]
    predictions = [
        replace(r, H_pair=r.H_pair + rng.normal(0, 0.01, r.H_pair.shape),
                H_onsite=r.H_onsite + 0.02 * r.S_onsite)
        for r in references
    ]
    names = ["W1O2", "W1H2"]
    dataset = evaluate_pairs(zip(names, predictions, references), window=4.0)

    onsite = [np.abs(p.H_onsite - r.H_onsite).ravel() for p, r in zip(predictions, references)]
    offsite = [np.abs(p.H_pair - r.H_pair).ravel() for p, r in zip(predictions, references)]
    assert dataset.mae_onsite.item() == pytest.approx(np.concatenate(onsite).mean())
    assert dataset.mae_offsite.item() == pytest.approx(np.concatenate(offsite).mean())
    assert dataset.mae_all.item() == pytest.approx(np.concatenate(onsite + offsite).mean())
    assert list(dataset.structure.values) == names
    assert dataset.attrs["window"] == 4.0

    # W-W occurs in both structures, O-O only in the first, H-H only in the second
    counts = dataset.n_elements_species_pair
    for label in ("W-W", "O-O"):
        per_structure = dataset.mae_species_pair_per_structure.sel(species_pair=label)
        weights = counts.sel(species_pair=label)
        expected = np.nansum(per_structure * weights) / weights.sum()
        assert dataset.mae_species_pair.sel(species_pair=label).item() == pytest.approx(expected)
    assert np.isnan(dataset.mae_species_pair_per_structure.sel(structure="W1H2",
                                                               species_pair="O-O"))
    assert counts.sel(structure="W1H2", species_pair="O-O").item() == 0
    assert list(dataset.species_pair.values) == ["H-H", "H-W", "O-O", "O-W", "W-W"]

    windows = [eigenvalue_errors(p, r, window=4.0) for p, r in zip(predictions, references)]
    n = np.array([w.n_eigenvalues_window.item() for w in windows])
    mae = np.array([w.eigenvalue_mae_window.item() for w in windows])
    assert dataset.eigenvalue_mae_window.item() == pytest.approx((n * mae).sum() / n.sum())
    assert dataset.error_histogram.sum().item() == sum(e.size for e in onsite + offsite)
    assert "reference_eigenvalues" not in dataset

    output = plot_evaluation(dataset, tmp_path / "evaluation.png")
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["evaluation.png"]
