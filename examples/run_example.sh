#!/usr/bin/env bash
# The bundled example: a tiny reference dataset (2 small WSe2 cells with Se vacancies,
# 2 rattled quartz cells) computed with GPAW, then summarised (table + H-decay figure);
# then the bundled WSe2 first-step model (examples/models/wse2_vacancies_first_step, trained
# on 3x2 cells by examples/wse2_first_step_model.yaml: H = B + dH with B GPAW's first SCF step
# from its zeroth-step H0, mixed with share 0.15, B = H0 + 0.15 (H[n0] - H0); the records
# carry the same B) predicts the WSe2 cells' Hamiltonians (S exact) and is evaluated against
# GPAW. The doping study at the end uses the direct Nb model: its 3,000-atom sheets are beyond
# GPAW's dense H0. Re-running resumes: finished records are kept. About 3 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-example_output}
mlh=.venv/bin/mlh
$mlh recipe wse2 -n 2 --repeat 2x1 --seed 1 -o "$out/structures/wse2_small.extxyz"
$mlh recipe sio2 -n 2 --repeat 1x1x1 --seed 2 -o "$out/structures/quartz_small.extxyz"
$mlh generate "$out/structures/wse2_small.extxyz" -o "$out/records" --config examples/wse2_gpaw.yaml \
  --baseline --first-step-share 0.15
$mlh generate "$out/structures/quartz_small.extxyz" -o "$out/records" --config examples/sio2_gpaw.yaml
$mlh summarize "$out/records" --plot "$out/h_decay.png" --table "$out/summary.nc"
model=examples/models/wse2_vacancies_first_step
$mlh infer $model "$out/structures/wse2_small.extxyz" -o "$out/predicted" --no-progress
$mlh evaluate $model "$out"/records/wse2_small-*.nc -o "$out/evaluation.nc" --plot "$out/evaluation.png"
# Electronic structure of the predicted and the GPAW Hamiltonian of one cell: PDOS
# (species and l, 6x6 k-grid), the band structure along G-X-S-Y-G, and the hole
# concentration after removing 0.05 electrons per cell.
analyze=.venv/bin/mlh-analyze
for kind in predicted records; do
  $analyze pdos "$out/$kind/wse2_small-0000.nc" -o "$out/analysis/$kind" --kpts 6x6x1
  $analyze bands "$out/$kind/wse2_small-0000.nc" -o "$out/analysis/$kind/bands.nc" \
    --kpts 6x6x1 --plot "$out/analysis/$kind/bands.png"
done
$analyze hole "$out/predicted/wse2_small-0000.nc" "$out/records/wse2_small-0000.nc" \
  -o "$out/analysis/holes.nc" --kpts 6x6x1 --charge 0.05
$analyze compare "$out/predicted" "$out/records" -o "$out/analysis/compare.nc" --kpts 3x3x1 \
  --plot "$out/analysis/compare.png"
# The quick doping study: 9 Nb-doped WSe2 sheets (240-3,000 atoms) -> hole concentrations ->
# Bayesian linear model (example_output/doping/summary.txt).
bash examples/doping_study.sh "$out/doping"
