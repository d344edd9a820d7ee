"""Hole concentration (analysis/hole.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import xarray as xr
from scipy.special import erf

from analysis.dos import energy_grid, pdos_dataset
from analysis.hole import cell_area, hole_concentration
from analysis.projected import ProjectedSpectrum
from analysis.spectrum import dense_spectrum
from mlh.errors import MLHError
from mlh.record.io import write_dataset
from tests.synthetic import random_record

LAYER_CELL = np.array([[3.0, 0.0, 0.0], [-1.5, 2.6, 0.0], [0.0, 0.0, 20.0]])


def _spectrum(energies, projections, numbers=(74, 34, 34), fermi_level=0.0, **changes):
    """A hand-made spectrum of a layer: one channel (l = 0) per atom, weight 2 per state."""
    energies = np.asarray(energies, dtype=float)
    n = len(energies)
    spectrum = ProjectedSpectrum(
        energies=energies, state_weights=np.full(n, 2.0), spin=np.zeros(n, int),
        kpoint=np.zeros(n, int), kpoints=np.zeros((1, 3)),
        projections=np.asarray(projections, dtype=float),
        channel_atom=np.arange(len(numbers)), channel_l=np.zeros(len(numbers), int),
        numbers=np.array(numbers), cell=LAYER_CELL, pbc=np.array([True, True, False]),
        fermi_level=fermi_level, n_electrons=2.0, electrons_below=0.0, method="dense",
        energy_range=(-np.inf, np.inf),
    )
    return replace(spectrum, **changes)


def test_single_state_in_window_is_an_erf():
    spectrum = _spectrum([-5.0, 0.1], [[1, 0, 0], [0.6, 0.3, 0.1]], fermi_level=-1.0)
    ds = hole_concentration(spectrum, window=(1.0, 1.2), sigma=0.05)
    inside = 2 * 0.5 * (erf(0.1 / (0.05 * np.sqrt(2))) - erf(-0.1 / (0.05 * np.sqrt(2))))
    np.testing.assert_allclose(ds.holes_species_per_cell.sel(species="W"), 0.6 * inside)
    np.testing.assert_allclose(ds.holes_species_per_cell.sel(species="Se"), 0.4 * inside)
    np.testing.assert_allclose(ds.holes_per_cell, inside)
    area = np.linalg.norm(np.cross(LAYER_CELL[0], LAYER_CELL[1]))
    np.testing.assert_allclose(ds.cell_area, area)
    np.testing.assert_allclose(ds.holes_per_area, inside / area * 1e16)
    assert ds.holes_per_area.attrs["units"] == "cm^-2" and ds.attrs["area_axis"] == 2


def test_species_choice_and_order():
    spectrum = _spectrum([0.1], [[0.6, 0.3, 0.1]])
    ds = hole_concentration(spectrum, species=["Se"])
    full = hole_concentration(spectrum, species=["Se", "W"])
    assert list(full.species.values) == ["Se", "W"]
    np.testing.assert_allclose(ds.holes_per_cell, full.holes_species_per_cell.sel(species="Se"))


def test_matches_integral_of_the_20000_point_pdos():
    record = random_record(31, n_atoms=4)
    kpoints = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.25, 0.25, 0.0]])
    spectrum = replace(dense_spectrum(record, kpoints=kpoints, charge=0.7),
                       pbc=np.array([True, True, False]))
    grid = energy_grid(-1.0, -1.0 + 19_999 * 1e-4)  # 20,000 points, E_F + 0 and 0.2 on it
    inside = (grid > -5e-5) & (grid < 0.2 + 5e-5)
    assert inside.sum() == 2001
    pdos = pdos_dataset(spectrum, grid)
    symbols = list(pdos.species.values)
    ds = hole_concentration(spectrum, species=symbols, window=(0.0, 0.2))
    for symbol in symbols:
        curve = pdos.pdos_species.sel(species=symbol).values
        numeric = np.trapezoid(curve[inside], grid[inside])
        assert float(ds.holes_species_per_cell.sel(species=symbol)) == pytest.approx(
            numeric, rel=1e-6)
    assert float(ds.holes_per_cell) > 1e-2  # the window does hold states


def test_cell_area_normal_to_each_axis():
    cell = np.diag([2.0, 3.0, 5.0])
    assert [cell_area(cell, axis) for axis in range(3)] == [15.0, 10.0, 6.0]
    with pytest.raises(MLHError, match="area axis"):
        cell_area(cell, 3)


def test_bad_input_raises():
    spectrum = _spectrum([0.1], [[0.6, 0.3, 0.1]])
    with pytest.raises(MLHError, match=r"unknown species \['Wx'\]"):
        hole_concentration(spectrum, species=["W", "Wx"])
    with pytest.raises(MLHError, match=r"\['Ni'\] are not in this structure"):
        hole_concentration(spectrum, species=["Ni"])
    with pytest.raises(MLHError, match="non-empty list"):
        hole_concentration(spectrum, species="W")
    with pytest.raises(MLHError, match="empty"):
        hole_concentration(spectrum, window=(0.2, 0.0))
    with pytest.raises(MLHError, match="empty"):
        hole_concentration(spectrum, window=(0.1, 0.1))
    bulk = replace(spectrum, pbc=np.array([True, True, True]))
    no_layer = hole_concentration(bulk)  # no layer: per-cell values only
    assert np.isnan(float(no_layer.holes_per_area)) and no_layer.attrs["area_axis"] == -1
    assert float(no_layer.holes_per_cell) == float(hole_concentration(spectrum).holes_per_cell)
    assert hole_concentration(bulk, area_axis=0).attrs["area_axis"] == 0
    window = replace(spectrum, energy_range=(-0.3, 0.4), method="shift-invert window")
    hole_concentration(window, window=(0.0, 0.1))
    with pytest.raises(MLHError, match="lists only"):
        hole_concentration(window, window=(0.0, 0.2))


def test_netcdf_round_trip(tmp_path):
    ds = hole_concentration(_spectrum([0.1], [[0.6, 0.3, 0.1]]), provenance={"source": "x"})
    path = write_dataset(ds, tmp_path / "hole.nc")
    with xr.open_dataset(path) as back:
        xr.testing.assert_identical(back.load(), ds)


def test_holes_do_not_change_under_the_gauge_h_plus_c_s():
    """H and H + c S have the same states; E_F moves by c, the hole concentration not."""
    from mlh.inference.metrics import gauge_aligned

    record = random_record(31, n_atoms=4)
    kpoints = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.25, 0.25, 0.0]])
    results = []
    for c in (0.0, 0.8):
        shifted = gauge_aligned(record, -c)
        spectrum = replace(dense_spectrum(shifted, kpoints=kpoints, charge=0.7),
                           pbc=np.array([True, True, False]))
        results.append((spectrum.fermi_level,
                        hole_concentration(spectrum, species=["W", "O"], window=(0.0, 0.2))))
    (fermi, holes), (fermi_shifted, holes_shifted) = results
    assert fermi_shifted - fermi == pytest.approx(0.8, abs=1e-9)
    assert float(holes_shifted.holes_per_cell) == pytest.approx(float(holes.holes_per_cell), rel=1e-9)
    assert float(holes.holes_per_cell) > 1e-3
