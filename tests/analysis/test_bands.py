"""Band structures from H(R), S(R) (analysis/bands.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import xarray as xr
from ase.cell import Cell

from analysis.bands import band_structure, plot_bands, record_bandpath
from analysis.spectrum import dense_spectrum
from mlh.errors import MLHError
from mlh.record.io import write_dataset
from tests.structures import STRUCTURES
from tests.synthetic import random_record


@pytest.fixture(scope="module")
def record():
    return random_record(21, n_atoms=3)


def test_bands_are_the_spectrum_at_each_path_point(record):
    ds = band_structure(record, None, npoints=12)
    spectrum = dense_spectrum(record, kpoints=ds.kpoints.values)
    np.testing.assert_allclose(ds.energies.values[0].ravel(), spectrum.energies, atol=1e-10)
    assert ds.attrs["energy_zero"] == "absolute"
    assert ds.sizes["kpoint"] == 12 and ds.sizes["band"] == record.n_orbitals
    assert np.all(np.diff(ds.k_distance.values) >= 0)
    assert "G" in ds.special_point_label.values
    assert ds.k_distance.attrs["units"] == "1/angstrom"


def test_path_string_bandpath_and_fermi_shift(record):
    path = record_bandpath(record, "GXY", npoints=9)
    from_string = band_structure(record, "GXY", npoints=9)
    shifted = band_structure(record, path, fermi_level=-2.5)
    np.testing.assert_allclose(shifted.energies + (-2.5), from_string.energies, atol=1e-12)
    assert shifted.attrs["fermi_level"] == -2.5 and shifted.attrs["energy_zero"] == "fermi_level"
    assert list(shifted.special_point_label.values) == ["G", "X", "Y"]


def test_two_dimensional_cell_gets_a_planar_path():
    """A hexagonal layer (pbc F on z) gets the 2D path G-M-K-G with k_z = 0."""
    path = record_bandpath(_layer_record(), npoints=20)
    assert path.path == "GMKG"
    assert np.all(path.kpts[:, 2] == 0)


def _layer_record():
    """A synthetic one-atom record in a hexagonal layer cell (pbc T T F)."""
    base = random_record(22, n_atoms=1, periodic=False)
    cell = np.array(Cell.new([3.3, 3.3, 20.0, 90, 90, 120]))
    return replace(base, cell=cell, pbc=np.array([True, True, False]))


def test_bad_input_raises(record):
    with pytest.raises(MLHError, match="overlap-only"):
        band_structure(replace(record, H_pair=None, H_onsite=None))
    with pytest.raises(MLHError, match="periodic"):
        band_structure(random_record(23, n_atoms=2, periodic=False))
    with pytest.raises(MLHError, match="no band path 'GQ'"):
        band_structure(record, "GQ")
    other = Cell(record.cell * 1.1).bandpath("GX", npoints=5)
    with pytest.raises(MLHError, match="different cell"):
        band_structure(record, other)


def test_netcdf_round_trip_and_figure(record, tmp_path):
    ds = band_structure(record, None, npoints=30, fermi_level=-1.0,
                        provenance={"source": "synthetic"})
    path = write_dataset(ds, tmp_path / "bands.nc")
    with xr.open_dataset(path) as back:
        xr.testing.assert_identical(back.load(), ds)
    figure = plot_bands(ds, tmp_path / "bands.png")
    assert figure.stat().st_size > 10_000


@pytest.mark.gpaw
def test_wse2_bands_match_gpaw_band_structure(gpaw_records):
    """Bands from the stored H(R), S(R) of a primitive WSe2 cell vs GPAW along G-M-K-G.

    GPAW: the SCF of the record's settings, then a fixed-density non-SCF calculation on
    the band path (calc.fixed_density(kpts=BandPath, symmetry="off")); all its bands are
    compared with ours at the same k-points. The requirement is 10 meV.
    """
    from gpaw.new.ase_interface import GPAW

    from mlh.gpaw.reference import gpaw_parameters

    build, settings = STRUCTURES["wse2"]
    _, record = gpaw_records("wse2")
    atoms = build()
    params = gpaw_parameters(atoms, settings, settings.scf_kpts(atoms.cell.array, atoms.pbc))
    atoms.calc = GPAW(**params, txt=None, symmetry={"point_group": False, "time_reversal": True})
    atoms.get_potential_energy()
    path = record_bandpath(record, "GMKG", npoints=30)
    bands = atoms.calc.fixed_density(kpts=path, symmetry="off", txt=None)
    gpaw_energies = np.array([bands.get_eigenvalues(kpt=k) for k in range(len(path.kpts))])

    ours = band_structure(record, path).energies.values[0]
    error = np.abs(ours[:, : gpaw_energies.shape[1]] - gpaw_energies).max()
    assert error < 0.010
