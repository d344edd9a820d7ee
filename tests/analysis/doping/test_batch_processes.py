"""`mlh-analyze doping`'s local Dask cluster (issue 19, case 2): a SIGKILL of the main
process leaves no worker behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

SCRIPT = """
import time
from analysis.doping.batch import dask_client

if __name__ == "__main__":
    with dask_client(None, workers=2) as client:
        futures = [client.submit(time.sleep, 300, pure=False) for _ in range(2)]
        while sum(len(v) for v in client.processing().values()) < 2:
            time.sleep(0.1)
        print("busy", flush=True)
        time.sleep(300)
"""


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_of_the_main_process_leaves_no_dask_worker(tmp_path):
    script = tmp_path / "study.py"
    script.write_text(SCRIPT)
    main = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            stderr=subprocess.DEVNULL, cwd=os.getcwd())
    try:
        assert main.stdout.readline().strip() == "busy"  # both workers run a task
        workers = [p for p in psutil.Process(main.pid).children(recursive=True) if _alive(p)]
        assert len(workers) >= 2
        os.kill(main.pid, signal.SIGKILL)
        main.wait(timeout=10)
        end = time.monotonic() + 15
        while any(_alive(w) for w in workers) and time.monotonic() < end:
            time.sleep(0.2)
        assert not [w.pid for w in workers if _alive(w)], "Dask processes outlived the killed main process"
    finally:
        if main.poll() is None:
            main.kill()
