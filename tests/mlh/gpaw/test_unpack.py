"""Unpacking recomputes S and H0 with GPAW exactly: a periodic WSe2 cell with k-points
(image pairs) and a molecule, packed from SCF records with H0 and unpacked through the CLI."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from mlh.cli.main import app
from mlh.gpaw.reference import reference_record
from mlh.record.io import read_record, write_record
from tests.structures import STRUCTURES


@pytest.fixture(scope="module", params=["wse2", "water"])
def scf_record(request, tmp_path_factory):
    """(folder, record) of a GPAW SCF record with H0 beside H."""
    build, settings = STRUCTURES[request.param]
    record = reference_record(build(), settings.model_copy(update={"baseline": True}))
    folder = tmp_path_factory.mktemp(request.param)
    write_record(record, folder / f"{request.param}.nc")
    return folder, record


def test_pack_and_unpack_reproduce_the_gpaw_record(scf_record, tmp_path):
    folder, record = scf_record
    runner = CliRunner()
    packed = runner.invoke(app, ["pack", str(folder), "-o", str(tmp_path / "packs")])
    assert packed.exit_code == 0, packed.output
    unpacked = runner.invoke(app, ["unpack", str(tmp_path / "packs"), "-o", str(tmp_path / "out"),
                                   "-j", "1", "--no-progress"])
    assert unpacked.exit_code == 0, unpacked.output
    name = next(folder.glob("*.nc")).name
    back = read_record(tmp_path / "out" / name)
    np.testing.assert_array_equal(back.pair_shift, record.pair_shift)
    np.testing.assert_allclose(back.S_pair, record.S_pair, atol=1e-10)
    np.testing.assert_allclose(back.H0_pair, record.H0_pair, atol=1e-10)
    np.testing.assert_allclose(back.H0_onsite, record.H0_onsite, atol=1e-10)
    assert np.abs(back.H_pair - record.H_pair).max() <= 5e-6 + 1e-10
    assert np.abs(back.H_onsite - record.H_onsite).max() <= 5e-6 + 1e-10
    np.testing.assert_array_equal(back.labels.forces, record.labels.forces)
    assert back.labels.energy == record.labels.energy
    rerun = runner.invoke(app, ["unpack", str(tmp_path / "packs"), "-o", str(tmp_path / "out")])
    assert "1 skipped" in rerun.output


def test_a_pack_from_another_gpaw_version_is_refused(scf_record, tmp_path):
    folder, _ = scf_record
    runner = CliRunner()
    assert runner.invoke(app, ["pack", str(folder), "-o", str(tmp_path / "packs")]).exit_code == 0
    pack = next((tmp_path / "packs").glob("*.mlhpack"))
    with zipfile.ZipFile(pack) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    meta = json.loads(members["meta.json"])
    meta["provenance"]["code_version"] = "0.0.1"
    members["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(pack, "w", zipfile.ZIP_LZMA) as archive:
        for member, data in members.items():
            archive.writestr(member, data)
    result = runner.invoke(app, ["unpack", str(pack), "-o", str(tmp_path / "out"), "-j", "1"])
    assert result.exit_code != 0
    assert "made with gpaw 0.0.1" in result.output and pack.name in result.output
    assert not list((tmp_path / "out").glob("*.nc"))


def test_packing_a_record_without_h0_fails_and_writes_nothing(gpaw_records, tmp_path):
    _, record = gpaw_records("water")
    write_record(record, tmp_path / "water.nc")
    result = CliRunner().invoke(app, ["pack", str(tmp_path / "water.nc"), "-o", str(tmp_path / "packs")])
    assert result.exit_code != 0 and "water.nc: only records with both H and H0" in result.output
    assert not (tmp_path / "packs").exists()
