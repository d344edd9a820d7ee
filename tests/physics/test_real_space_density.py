"""Real-space pseudo density: exact PAW charge split, grid integral, GPAW's own density, output."""

import numpy as np
import pytest
import xarray as xr
from ase.units import Bohr

from mlh.errors import MLHError
from physics.density_matrix import density_matrices_for_record
from physics.real_space_density import (
    pseudo_density_for_record,
    write_density_cube,
    write_density_netcdf,
)

pytestmark = pytest.mark.gpaw


@pytest.fixture(scope="module")
def water_density(gpaw_records):
    atoms, record = gpaw_records("water")
    return atoms, record, pseudo_density_for_record(record)


@pytest.mark.parametrize("name", ["water", "wse2"])
def test_electron_count(gpaw_records, water_density, name):
    if name == "water":
        _, record, result = water_density
    else:
        _, record = gpaw_records(name)
        result = pseudo_density_for_record(record)
    N = record.labels.n_electrons
    # Exact: Tr(rho Theta) + PAW corrections sum_a Tr(D^a dO^a) = N.
    assert result.pseudo_electron_count + result.paw_charges.sum() == pytest.approx(N, abs=1e-8)
    assert 0.9 * N < result.pseudo_electron_count < N
    # The grid quadrature of n(r) = sum rho phi phi reproduces Tr(rho Theta).
    assert result.grid_electron_count == pytest.approx(result.pseudo_electron_count, rel=1e-4)
    assert result.density.min() > -1e-10


def test_matches_gpaw_own_density(water_density):
    """GPAW's LCAO density of the same states is c (n + nct), c its normalisation factor."""
    from gpaw.new.calculation import DFT

    from mlh.gpaw.reference import gpaw_parameters
    from mlh.gpaw.settings import GPAWSettings

    atoms, record, result = water_density
    dft = DFT(atoms, **gpaw_parameters(atoms, GPAWSettings(), (1, 1, 1)),
              symmetry={"point_group": False, "time_reversal": True}, txt=None)
    density = dft.density
    nct = density.nct_R.data[None]
    scf_mixed = density.nt_sR.data.copy()          # the SCF's last input density
    density.update(dft.ibzwfs)                     # the density of the final states
    nt_out = density.nt_sR.data
    ours = result.density[:, 1:, 1:, 1:] * Bohr**3  # drop the zero boundary plane
    assert ours.shape == nt_out.shape
    model = ours + nct
    scale = np.vdot(model, nt_out) / np.vdot(model, model)
    assert abs(scale - 1) < 1e-3
    assert np.abs(nt_out - scale * model).max() < 1e-8 * np.abs(nt_out).max()
    # The SCF density itself differs only by the SCF's convergence (1e-4 e per electron).
    dv = density.nt_sR.desc.dv
    difference = np.abs(scf_mixed - nt_out).sum() * dv
    assert difference < 1e-2, f"∫|n_scf - n_out| = {difference:.2e} electrons"


def test_netcdf_and_cube_output(tmp_path, water_density):
    from ase.io import read

    atoms, record, result = water_density
    path = write_density_netcdf(result, tmp_path / "water_density.nc",
                                provenance={"source": "water"})
    with xr.open_dataset(path) as ds:
        assert ds["density"].attrs["units"] == "electron/angstrom^3"
        assert all("units" in ds[name].attrs for name in ds.data_vars)
        np.testing.assert_array_equal(ds["density"].values, result.density)
        assert float(ds["pseudo_electron_count"]) == result.pseudo_electron_count
        assert ds.attrs["provenance_source"] == "water"
    cube = write_density_cube(result, tmp_path / "water.cube")
    read_back = read(cube, format="cube", full_output=True)
    np.testing.assert_allclose(read_back["data"], result.total * Bohr**3, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(read_back["atoms"].positions, result.positions, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(MLHError, match="spin channel 1"):
        write_density_cube(result, tmp_path / "bad.cube", spin=1)
    assert not (tmp_path / "bad.cube").exists()


def test_failed_write_leaves_nothing(tmp_path, water_density, monkeypatch):
    _, _, result = water_density

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", fail)
    with pytest.raises(OSError):
        write_density_netcdf(result, tmp_path / "density.nc")
    assert list(tmp_path.iterdir()) == []


def test_density_matrices_of_another_basis_are_rejected(gpaw_records):
    _, water = gpaw_records("water")
    _, wse2 = gpaw_records("wse2")
    with pytest.raises(MLHError, match="orbitals"):
        pseudo_density_for_record(water, dm=density_matrices_for_record(wse2))
