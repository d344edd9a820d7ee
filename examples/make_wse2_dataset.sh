#!/usr/bin/env bash
# The WSe2-with-Se-vacancies training set of the bundled model: 20 random 3x2 orthogonal
# cells (33-36 atoms, 0-3 Se vacancies, rattled) computed with GPAW (examples/wse2_gpaw.yaml),
# with the zeroth-step H0 beside H (--baseline) for the correction model.
# About 20 min on 2 cores; re-running resumes (finished records are kept).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-example_data}
mlh=.venv/bin/mlh
$mlh recipe wse2 -n 20 --seed 11 -o "$out/wse2_3x2.extxyz"
$mlh generate "$out/wse2_3x2.extxyz" -o "$out/wse2_3x2" --config examples/wse2_gpaw.yaml --baseline
