"""Time and peak memory of the zeroth-step Hamiltonian H0 (`mlh generate --baseline-only`:
S(R) and H0(R), no SCF) on WSe2 sheets of growing size (issue 16, part 5).

    .venv/bin/python benchmarks/baseline_scale.py --repeats 6x3,12x6 \
        --config examples/wse2_gpaw.yaml

Each size runs in a child process (1 thread) that builds a WSe2 sheet with 1 % Se
vacancies (`wse2_with_vacancies`, orthogonal cells of 6 atoms) and computes its
baseline-only record with GPAW (LCAO: dense n_orbitals^2 matrices); the child reports
wall time and its peak resident memory. A size that fails or runs out of `--timeout`
is recorded as such. Results are kept per size (resumable) in
benchmarks/results/baseline_scale.json, with a power-law fit t ~ a N^b and m ~ c N^d over
the finished sizes and its extrapolation to 4,000 atoms. Units: s, GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

from mlh.grids import parse_grid

from _results import write_results

_CHILD = """
import json, resource, sys, time
import numpy as np
from mlh.gpaw.reference import reference_record
from mlh.gpaw.settings import load_settings
from mlh.gpaw.structures import wse2_with_vacancies
config, nx, ny = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
settings = load_settings(config).model_copy(update={"task": "baseline"})
atoms = wse2_with_vacancies(np.random.default_rng(3), repeat=(nx, ny), mean_vacancies=0.01 * 2 * nx * ny)
start = time.perf_counter()
record = reference_record(atoms, settings)
seconds = time.perf_counter() - start
print(json.dumps({"atoms": len(atoms), "orbitals": int(record.n_orbitals), "pairs": int(record.n_pairs),
                  "seconds": seconds, "peak_memory_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def _fit(sizes: np.ndarray, values: np.ndarray, target: float) -> dict:
    """Power law values ~ a sizes^b (least squares in logs) and its value at `target`."""
    b, log_a = np.polyfit(np.log(sizes), np.log(values), 1)
    return {"exponent": float(b), "at_4000_atoms": float(np.exp(log_a) * target**b)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", default="6x3,12x6", help="orthogonal cells, e.g. 6x3 (108 atoms)")
    parser.add_argument("--config", type=Path, default=Path("examples/wse2_gpaw.yaml"))
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per size")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/baseline_scale.json"))
    args = parser.parse_args()

    result = {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}, "
                         "1 thread, 2 cores shared with other jobs",
              "config": str(args.config), "sizes": {}}
    if args.out.exists():
        result["sizes"] = json.loads(args.out.read_text()).get("sizes", {})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for repeat in args.repeats.split(","):
        if "seconds" in result["sizes"].get(repeat, {}):
            print(f"{repeat}: done")
            continue
        nx, ny = parse_grid(repeat, "--repeats", lengths=(2,))
        try:
            child = subprocess.run([sys.executable, "-c", _CHILD, str(args.config), str(nx), str(ny)],
                                   capture_output=True, text=True, timeout=args.timeout, env=env)
            if child.returncode == 0:
                result["sizes"][repeat] = json.loads(child.stdout.strip().splitlines()[-1])
            else:
                result["sizes"][repeat] = {"failed": child.stderr.strip().splitlines()[-1:]}
        except subprocess.TimeoutExpired:
            result["sizes"][repeat] = {"failed": f"longer than {args.timeout:g} s"}
        print(repeat, result["sizes"][repeat], flush=True)
        finished = [v for v in result["sizes"].values() if "seconds" in v]
        if len(finished) >= 2:
            atoms = np.array([v["atoms"] for v in finished], float)
            result["fit_seconds"] = _fit(atoms, np.array([v["seconds"] for v in finished]), 4000.0)
            result["fit_peak_memory_GiB"] = _fit(
                atoms, np.array([v["peak_memory_GiB"] for v in finished]), 4000.0)
        write_results(result, args.out)


if __name__ == "__main__":
    main()
