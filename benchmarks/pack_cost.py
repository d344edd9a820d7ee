"""What packs save: size on disk and unpacking time against the records and their SCFs.

    .venv/bin/python benchmarks/pack_cost.py example_data/sio2_train --count 6 --out /tmp/pack_bench

Packs the first COUNT records of a folder (records made with mlh generate --baseline),
unpacks them one at a time (one process, so times are per core) and compares: pack and
record sizes, unpacking seconds against the SCF's wall time stored in each record, and
the largest differences of H, H0 and S from the originals (H: rounding, at most
quantum / 2; H0, S: GPAW round-off). Prints a JSON summary and saves it to
benchmarks/results/pack_cost_<folder name>.json.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np

from mlh.gpaw.unpack import recomputed_record
from mlh.record.io import read_record, record_files
from mlh.record.pack import DEFAULT_QUANTUM, PACK_SUFFIX, pack_record, read_pack, write_pack

from _results import write_results


def largest_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max(initial=0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--quantum", type=float, default=DEFAULT_QUANTUM)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for path in record_files([args.records])[: args.count]:
        record = read_record(path)
        pack_path = write_pack(pack_record(record, args.quantum), args.out / f"{path.stem}{PACK_SUFFIX}")
        start = time.perf_counter()
        back = recomputed_record(read_pack(pack_path))
        seconds = time.perf_counter() - start
        rows.append({
            "record": path.name,
            "atoms": record.n_atoms,
            "pairs": record.n_pairs,
            "record_mb": path.stat().st_size / 1e6,
            "pack_kb": pack_path.stat().st_size / 1e3,
            "scf_record_seconds": float(record.provenance.get("wall_time_seconds", np.nan)),
            "unpack_seconds": seconds,
            "max_dH_ev": largest_difference(np.concatenate([back.H_pair.ravel(), back.H_onsite.ravel()]),
                                            np.concatenate([record.H_pair.ravel(), record.H_onsite.ravel()])),
            "max_dH0_ev": max(largest_difference(back.H0_pair, record.H0_pair),
                              largest_difference(back.H0_onsite, record.H0_onsite)),
            "max_dS": max(largest_difference(back.S_pair, record.S_pair),
                          largest_difference(back.S_onsite, record.S_onsite)),
        })
        print(rows[-1], flush=True)
    summary = {
        "settings": {"records": str(args.records), "count": args.count, "quantum_ev": args.quantum},
        "cpu": platform.processor() or platform.machine(),
        "note": "unpacking in one process: seconds per core; the SCF record time is per core too "
                "(mlh generate's workers run one BLAS thread each)",
        "records": rows,
        "pack_kb_mean": float(np.mean([r["pack_kb"] for r in rows])),
        "record_mb_mean": float(np.mean([r["record_mb"] for r in rows])),
        "unpack_seconds_mean": float(np.mean([r["unpack_seconds"] for r in rows])),
        "scf_record_seconds_mean": float(np.mean([r["scf_record_seconds"] for r in rows])),
        "max_dH_ev": max(r["max_dH_ev"] for r in rows),
        "max_dH0_ev": max(r["max_dH0_ev"] for r in rows),
        "max_dS": max(r["max_dS"] for r in rows),
    }
    print(write_results(summary, Path(__file__).parent / "results" / f"pack_cost_{args.records.name}.json"))


if __name__ == "__main__":
    main()
