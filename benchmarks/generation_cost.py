"""Cost of the example dataset recipes: GPAW time per structure, throughput, size on disk.

    .venv/bin/python benchmarks/generation_cost.py wse2 --count 4 --repeat 3x2 \
        --config examples/wse2_gpaw.yaml --jobs 2 --out /tmp/bench_wse2

Prints a JSON summary and saves it to benchmarks/results/generation_<recipe>.json.
Re-running with the same --out reuses finished records (their stored wall times count).
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
from ase.io import write

from mlh.gpaw.generate import generate
from mlh.gpaw.settings import load_settings
from mlh.gpaw.structures import quartz_with_vacancy, wse2_with_vacancies
from mlh.grids import parse_grid
from mlh.record.io import read_record

from _results import write_results

RECIPES = {"wse2": wse2_with_vacancies, "sio2": quartz_with_vacancy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--repeat", default=None, help="e.g. 3x2 or 2x2x1")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    kwargs = {} if args.repeat is None else {"repeat": parse_grid(args.repeat, "--repeat", lengths=(2, 3))}
    rng = np.random.default_rng(args.seed)
    structures = args.out / f"{args.recipe}.extxyz"
    args.out.mkdir(parents=True, exist_ok=True)
    if not structures.exists():
        write(structures, [RECIPES[args.recipe](rng, **kwargs) for _ in range(args.count)])
    settings = load_settings(args.config)
    start = time.perf_counter()
    results = generate([structures], args.out / "records", settings, jobs=args.jobs,
                       progress=False)
    elapsed = time.perf_counter() - start
    paths = sorted((args.out / "records").glob("*.nc"))
    records = [read_record(p) for p in paths]
    times = np.array([r.provenance["wall_time_seconds"] for r in records])
    summary = {
        "recipe": args.recipe,
        "repeat": args.repeat,
        "settings": settings.model_dump(),
        "jobs": args.jobs,
        "cpu": platform.processor() or platform.machine(),
        "structures": len(records),
        "failed": [r.source for r in results if r.error],
        "atoms": sorted({r.n_atoms for r in records}),
        "orbitals": sorted({r.n_orbitals for r in records}),
        "scf_kpts": sorted({r.provenance["scf_kpts"] for r in records}),
        "realspace_kpts": sorted({r.provenance["realspace_kpts"] for r in records}),
        "seconds_per_structure_mean": float(times.mean()),
        "seconds_per_structure_max": float(times.max()),
        "batch_wall_seconds_this_run": elapsed,
        "structures_per_hour_with_jobs": 3600 * args.jobs / float(times.mean()),
        "mib_per_record_mean": float(np.mean([p.stat().st_size for p in paths]) / 2**20),
    }
    print(write_results(summary, Path(__file__).parent / "results" / f"generation_{args.recipe}.json"))


if __name__ == "__main__":
    main()
