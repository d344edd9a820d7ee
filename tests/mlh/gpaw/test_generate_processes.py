"""`mlh generate`'s processes (issue 19, case 2): workers die with a killed main process,
a second run keeps out of a folder in use, and a rerun says how many records it skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from ase.build import molecule
from ase.io import write
from typer.testing import CliRunner

from mlh.cli.main import app
from mlh.file_output import output_lock

runner = CliRunner()
MLH = str(Path(sys.executable).with_name("mlh"))


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_for_worker(parent: psutil.Process, timeout: float) -> list[psutil.Process]:
    """The descendants of `parent` once a worker process (multiprocessing spawn) exists."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        children = parent.children(recursive=True)
        if any("spawn_main" in " ".join(child.cmdline()) for child in children if _alive(child)):
            return children
        time.sleep(0.2)
    raise AssertionError("no worker process started")


@pytest.mark.gpaw
def test_sigkill_of_the_main_process_leaves_no_worker(tmp_path):
    """kill -9 of `mlh generate` during GPAW work: no worker survives it and no record is
    written afterwards (the issue saw an orphaned worker write one two minutes later)."""
    structures = tmp_path / "water.extxyz"
    write(structures, [molecule("H2O", vacuum=4.0), molecule("H2O", vacuum=4.5)])
    out = tmp_path / "records"
    main = subprocess.Popen([MLH, "generate", str(structures), "-o", str(out), "-j", "1", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        workers = _wait_for_worker(psutil.Process(main.pid), timeout=60)
        time.sleep(2.0)  # the worker is importing GPAW or running the first SCF
        workers = [w for w in {*workers, *psutil.Process(main.pid).children(recursive=True)} if _alive(w)]
        written = sorted(out.glob("*.nc"))
        os.kill(main.pid, signal.SIGKILL)
        main.wait(timeout=10)
        end = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < end:
            time.sleep(0.2)
        survivors = [w.pid for w in workers if _alive(w)]
        assert not survivors, f"processes outlived the killed main process: {survivors}"
        time.sleep(2.0)
        assert sorted(out.glob("*.nc")) == written
        with output_lock(out, "rerun"):  # the kernel released the dead run's lock
            pass
    finally:
        if main.poll() is None:
            main.kill()


@pytest.mark.gpaw
def test_second_run_on_a_folder_in_use_is_refused(tmp_path):
    structures = tmp_path / "water.extxyz"
    write(structures, molecule("H2O", vacuum=3.0))
    out = tmp_path / "records"
    with output_lock(out, "mlh generate"):
        result = runner.invoke(app, ["generate", str(structures), "-o", str(out), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {out}: another mlh generate is writing into this folder (it holds {out / '.mlh.lock'}); "
        "wait for it to finish or choose another folder"]
    assert not list(out.glob("*.nc"))


@pytest.mark.gpaw
def test_rerun_reports_skipped_records(tmp_path):
    structures = tmp_path / "water.extxyz"
    write(structures, molecule("H2O", vacuum=3.0))
    out = tmp_path / "records"
    out.mkdir()
    (out / "water-0000.nc").write_bytes(b"finished by an earlier run")
    result = runner.invoke(app, ["generate", str(structures), "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"0 records written, 0 failed, 1 skipped (finished earlier), to {out}"
