#!/usr/bin/env bash
# Training set of the bundled Nb-doped WSe2 models (examples/models/wse2_nb_vacancies and
# wse2_nb_vacancies_correction): the 20 WSe2-with-Se-vacancies cells of make_wse2_dataset.sh,
# 14 more such cells, and 24 + 16 3x2 cells with Nb on W sites (Poisson mean 1.5 per cell)
# and Se vacancies (Poisson mean 1), all computed with GPAW (examples/wse2_gpaw.yaml; the Nb
# cells with H0 beside H), and 6 more Nb cells (seed 23) that no model trains on, for
# out-of-sample checks (benchmarks/harris_share.py). About 1.5 h on 2 cores; re-running
# resumes (finished records are kept). Then: mlh train
# examples/wse2_nb_model.yaml (direct) or examples/wse2_nb_correction_model.yaml (correction).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-example_data}
mlh=.venv/bin/mlh
bash examples/make_wse2_dataset.sh "$out"
$mlh recipe wse2 -n 14 --seed 12 -o "$out/wse2_3x2_more.extxyz"
$mlh generate "$out/wse2_3x2_more.extxyz" -o "$out/wse2_3x2_more" --config examples/wse2_gpaw.yaml
$mlh recipe wse2 -n 24 --seed 21 --dopants 1.5 -o "$out/wse2_nb_3x2.extxyz"
$mlh generate "$out/wse2_nb_3x2.extxyz" -o "$out/wse2_nb_3x2" --config examples/wse2_gpaw.yaml --baseline
$mlh recipe wse2 -n 16 --seed 22 --dopants 1.5 -o "$out/wse2_nb_3x2_more.extxyz"
$mlh generate "$out/wse2_nb_3x2_more.extxyz" -o "$out/wse2_nb_3x2_more" --config examples/wse2_gpaw.yaml --baseline
$mlh recipe wse2 -n 6 --seed 23 --dopants 1.5 -o "$out/wse2_nb_3x2_test.extxyz"
$mlh generate "$out/wse2_nb_3x2_test.extxyz" -o "$out/wse2_nb_3x2_test" --config examples/wse2_gpaw.yaml --baseline
