"""`mlh-analyze doping` end to end: Dask batch, resume after a kill, failures, a separately
started Dask scheduler, and bad input. Uses the bundled WSe2 model (W, Se)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from ase import Atoms
from ase.io import write
from typer.testing import CliRunner

from analysis.cli import app
from analysis.doping.design import DesignSpec, design_variables
from mlh.gpaw.structures import wse2_with_vacancies
from tests.structures import WSE2_MODEL as MODEL

MLH_ANALYZE = Path(sys.executable).parent / "mlh-analyze"
DESIGN = ["--vacancy-species", "Se", "--lattice-species", "W", "--sites-per-lattice-atom", "2"]
FAST_STATS = ["--draws", "300", "--tune", "300", "--chains", "2", "--no-progress"]
runner = CliRunner()


def layers(count: int, repeat=(3, 2), seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    return [wse2_with_vacancies(rng, repeat=repeat, vacancy_rate=rng.uniform(0, 0.08))
            for _ in range(count)]


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[Path]:
    """Predicted records of ten 4x3 WSe2 cells (70-72 atoms) with Se vacancies."""
    from mlh.inference.prediction import predict_record
    from mlh.model.predictor import Predictor
    from mlh.record.io import write_record

    folder = tmp_path_factory.mktemp("doping_records")
    predictor = Predictor.load(MODEL)
    return [write_record(predict_record(predictor, atoms), folder / f"layer{n}.nc")
            for n, atoms in enumerate(layers(10, repeat=(4, 3), seed=1))]


def run(*args) -> object:
    return runner.invoke(app, ["doping", *map(str, args)])


def test_structures_to_posterior_with_one_failing_structure(tmp_path):
    structures = layers(5)
    broken = structures[0].copy()
    broken.positions[1] = broken.positions[0] + [0.3, 0.0, 0.0]  # atoms 0.3 Å apart
    write(tmp_path / "layers.extxyz", structures + [broken])
    out = tmp_path / "study"
    result = run(tmp_path / "layers.extxyz", "--model", MODEL, "-o", out, *DESIGN,
                 "--workers", "1", *FAST_STATS)
    assert result.exit_code == 1, result.output
    assert "structures: 6 (5 ok, 1 failed" in result.stdout
    [line] = result.stderr.splitlines()  # the batch policy: one line per failed structure
    assert line.startswith(f"error: {tmp_path / 'layers.extxyz'}@5: ")
    with xr.open_dataset(out / "hole_concentrations.nc") as table:
        assert list(table["status"].values) == ["ok"] * 5 + ["failed"]
        assert "0.5" in str(table["error"].values[5])
        assert np.isnan(table["holes_per_area"].values[5])
        spec = DesignSpec(vacancy_species="Se", lattice_species=("W",), sites_per_lattice_atom=2)
        for n, atoms in enumerate(structures):
            assert table["vacancy_rate"].values[n] == pytest.approx(
                design_variables(atoms, spec)["vacancy_rate"])
        assert (table["inference_seconds"].values[:5] > 0).all()
        assert table["holes_per_area"].attrs["units"] == "cm^-2"
    assert json.loads((out / "failures.json").read_text()).keys() == {"layers-0005"}
    with xr.open_dataset(out / "posterior_summary.nc") as summary:
        assert set(summary["parameter"].values) == {"c_density", "c_vacancy", "sigma"}
    for name in ("posterior.nc", "summary.txt", "design.png", "posterior_pairs.png"):
        assert (out / name).stat().st_size > 0


def test_holes_equal_the_hole_command(records, tmp_path):
    out = tmp_path / "study"
    result = run(*records[:3], "-o", out, "--no-stats", "--workers", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    single = runner.invoke(app, ["hole", str(records[1]), "-o", str(tmp_path / "h.nc")])
    assert single.exit_code == 0, single.output
    with xr.open_dataset(out / "hole_concentrations.nc") as table, \
            xr.open_dataset(tmp_path / "h.nc") as reference:
        assert table["holes_per_area"].values[1] == pytest.approx(
            float(reference["holes_per_area"].values[0]), rel=1e-12)
        assert table["fermi_level"].values[1] == pytest.approx(
            float(reference["fermi_level"].values[0]), abs=1e-12)


def test_user_design_table_and_statistics_config(records, tmp_path):
    names = [p.stem for p in records]
    field = np.linspace(0.0, 1.0, len(names))
    (tmp_path / "design.csv").write_text(
        "structure,gate_field\n" + "".join(f"{n},{f}\n" for n, f in zip(names, field)))
    (tmp_path / "stats.yaml").write_text(
        "terms:\n  - {name: c_field, variable: gate_field, prior: {mu: 0, sigma: 5}}\n"
        "intercept: {mu: 0, sigma: 10}\ndraws: 200\ntune: 200\nchains: 2\n")
    out = tmp_path / "study"
    result = run(*records, "-o", out, "--design-table", tmp_path / "design.csv", "--stats-config",
                 tmp_path / "stats.yaml", "--density-region", "none", "--workers", "1", "--no-progress")
    assert result.exit_code == 0, result.output
    with xr.open_dataset(out / "hole_concentrations.nc") as table:
        np.testing.assert_allclose(table["gate_field"].values, field)
        assert "mass_density" not in table
    with xr.open_dataset(out / "posterior_summary.nc") as summary:
        assert set(summary["parameter"].values) == {"c_field", "intercept", "sigma"}
    assert "c_field" in (out / "summary.txt").read_text()


def test_a_killed_batch_resumes_without_redoing_finished_structures(records, tmp_path):
    out = tmp_path / "study"
    command = [str(MLH_ANALYZE), "doping", *map(str, records), "-o", str(out), "--no-stats",
               "--workers", "1", "--no-progress"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "work").glob("layer*.json")):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p: p.stat().st_mtime_ns for p in (out / "work").glob("layer*.json")}
    assert 0 < len(finished) < len(records)
    assert not (out / "hole_concentrations.nc").exists()

    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{len(finished)} structures were finished by an earlier run" in result.stdout
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    with xr.open_dataset(out / "hole_concentrations.nc") as table:
        assert (table["status"].values == "ok").all() and table.sizes["structure"] == len(records)


def test_runs_on_a_separately_started_dask_scheduler(records, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    dask = str(Path(sys.executable).parent / "dask")
    processes = [subprocess.Popen([dask, "scheduler", "--scheduler-file", str(scheduler_file),
                                   "--port", "0", "--no-dashboard"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        processes.append(subprocess.Popen(
            [dask, "worker", "--scheduler-file", str(scheduler_file), "--nworkers", "2",
             "--nthreads", "1", "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        address = json.loads(scheduler_file.read_text())["address"]
        out = tmp_path / "study"
        result = run(*records[:4], "-o", out, "--scheduler", address, *DESIGN, *FAST_STATS)
        assert result.exit_code == 0, result.output
        with xr.open_dataset(out / "hole_concentrations.nc") as table:
            assert (table["status"].values == "ok").all()
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


@pytest.mark.parametrize("make_args, fragment", [
    (lambda d, s: [s, "--model", d / "nowhere"], "no such model folder"),
    (lambda d, s: [d / "nb.extxyz", "--model", MODEL], "species Nb not known to the model"),
    (lambda d, s: [d / "empty.extxyz", "--model", MODEL], "Empty file"),
    (lambda d, s: [s, "--model", MODEL, "--dopant", "Ni", "--host", "Hf"], "no Hf atoms"),
    (lambda d, s: [s, "--model", MODEL, "--vacancy-species", "Se"], "lattice species"),
    (lambda d, s: [s, "--model", MODEL, "--design-table", d / "table.csv"], "no row for structures"),
    (lambda d, s: [s], "need a model"),
    (lambda d, s: [s, "--model", MODEL, "--scheduler", "tcp://127.0.0.1:9"], "cannot reach"),
])
def test_bad_input_stops_before_any_output(tmp_path, make_args, fragment):
    structures = tmp_path / "layers.extxyz"
    write(structures, layers(2))
    doped = layers(1)[0]
    doped.symbols[np.flatnonzero(doped.numbers == 74)[0]] = "Nb"
    write(tmp_path / "nb.extxyz", doped)
    (tmp_path / "empty.extxyz").write_text("")
    (tmp_path / "table.csv").write_text("structure,x\nlayers-0000,1.0\n")
    out = tmp_path / "study"
    result = run(*make_args(tmp_path, structures), "-o", out, "--no-progress")
    assert result.exit_code == 1, result.output
    message = result.output.strip().splitlines()
    assert len(message) == 1 and message[0].startswith("error: ") and fragment in message[0], message
    assert not (out / "hole_concentrations.nc").exists()
