"""`mlh-analyze transport` end to end on a tiled GPAW WSe2 record, and bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from analysis.cli import app
from mlh.io.sisl import record_to_sisl, sisl_to_record
from mlh.record.hamiltonian import Labels
from mlh.record.io import read_record, write_record

runner = CliRunner()


@pytest.fixture(scope="module")
def files(gpaw_records, tmp_path_factory):
    """The primitive WSe2 record (electrode), the same tiled 8 times along a1 (device), an
    electrode with H + 0.3 S, and the device without S, as files."""
    _, record = gpaw_records("wse2")
    folder = tmp_path_factory.mktemp("transport")
    device = dataclasses.replace(sisl_to_record(record_to_sisl(record).tile(8, 0), basis_name=record.basis.name),
                                 labels=Labels(fermi_level=record.labels.fermi_level))
    shifted = dataclasses.replace(record, H_onsite=record.H_onsite + 0.3 * record.S_onsite,
                                  H_pair=record.H_pair + 0.3 * record.S_pair)
    paths = {name: write_record(r, folder / f"{name}.nc")
             for name, r in (("electrode", record), ("device", device), ("shifted", shifted))}
    with xr.open_dataset(paths["device"]) as ds:
        ds.load().drop_vars(["S_pair", "S_onsite"]).to_netcdf(folder / "no_overlap.nc")
    paths["no_overlap"] = folder / "no_overlap.nc"
    return paths


def run(*args):
    return runner.invoke(app, ["transport", *[str(a) for a in args]])


def test_transport_writes_transmission_current_and_figure(files, tmp_path):
    out, figure = tmp_path / "t.nc", tmp_path / "t.png"
    fermi_level = read_record(files["electrode"]).labels.fermi_level - 1.6    # a window in the valence band
    result = run(files["device"], "-o", out, "--electrode-cells", 8, "--energies", "-0.3,0.3", "--points", 13,
                 "--bias", "0.2,0.4", "--temperature", 30, "--kpts", "1x2x1", "--fermi-level", fermi_level,
                 "--plot", figure)
    assert result.exit_code == 0, result.output
    assert figure.stat().st_size > 0
    with xr.open_dataset(out) as ds:
        assert ds.energy.attrs["units"] == "eV" and ds.current.attrs["units"] == "A"
        np.testing.assert_allclose(ds.energy.values, np.linspace(-0.3, 0.3, 13))
        assert ds.sizes["kpoint"] == 1 and ds.attrs["n_blocks"] == 2
        # ballistic plateaus: integer transmissions (the default eta = 1e-4 eV leaves ~1e-6)
        np.testing.assert_allclose(ds.transmission_k.values, np.rint(ds.transmission_k.values), atol=1e-3)
        np.testing.assert_allclose(ds.transmission_right_to_left.values, ds.transmission.values, atol=1e-9)
        assert np.all(ds.current.values > 0) and ds.current.values[1] > ds.current.values[0]


@pytest.mark.parametrize("args, fragments", [
    (["{device}", "--electrode", "{shifted}"], ["shifted.nc", "in-layer H differs from the device's end"]),
    (["{device}", "--electrode", "{electrode}", "--axis", "2"], ["electrode.nc", "axis 2 is not periodic"]),
    (["{device}", "--electrode-cells", "8", "--energies", "-0.2,0.2", "--bias", "1.0"],
     ["misses the bias window"]),
    (["{no_overlap}", "--electrode-cells", "8"], ["no_overlap.nc", "S_pair"]),
    (["{device}", "--electrode-cells", "7"], ["device.nc", "shorter than two electrode principal layers"]),
    (["{device}"], ["--electrode-cells", "--electrode"]),
])
def test_bad_input_gives_one_message_and_no_output(files, tmp_path, args, fragments):
    out, figure = tmp_path / "out.nc", tmp_path / "out.png"
    result = run(*[a.format(**files) for a in args], "-o", out, "--plot", figure, "--points", 3)
    assert result.exit_code == 1, result.output
    message = result.output.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in message[0], message[0]
    assert not out.exists() and not figure.exists()
    assert list(tmp_path.iterdir()) == []
