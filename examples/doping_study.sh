#!/usr/bin/env bash
# The bundled doping study (seed 001, sections 2.2.2 and 4.3-4.4, on a system that trains
# cheaply): WSe2 monolayers with Nb on W sites (p-type) and Se vacancies, 240 to 3,000
# atoms, random Nb and vacancy rates and +-2 % strain (the training range). The bundled model
# (examples/models/wse2_nb_vacancies, trained on 3x2 cells) predicts every Hamiltonian on a
# local Dask cluster; the hole concentration is the W+Se PDOS in E_F + [0, 0.2] eV; the
# Bayesian linear model relates it to the Nb:W ratio, the mass density and the Se vacancy
# rate. Results in OUT/ (default example_output/doping): hole_concentrations.nc,
# posterior.nc, posterior_summary.nc, summary.txt, design.png, posterior_pairs.png.
# Re-running resumes. The same command serves Ni-doped a-HfO2 on WSe2 with
# --dopant Ni --host Hf --lattice-species W and that model.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-example_output/doping}
mlh=.venv/bin/mlh
rates=(--dopant-rate 0:0.03 --vacancy-rate 0:0.02)
$mlh recipe wse2 -n 14 --repeat 8x5 --seed 31 "${rates[@]}" -o "$out/structures/sheets_240.extxyz"
$mlh recipe wse2 -n 8 --repeat 12x7 --seed 32 "${rates[@]}" -o "$out/structures/sheets_504.extxyz"
$mlh recipe wse2 -n 2 --repeat 25x12 --seed 33 "${rates[@]}" -o "$out/structures/sheets_1800.extxyz"
$mlh recipe wse2 -n 1 --repeat 25x20 --seed 34 "${rates[@]}" -o "$out/structures/sheets_3000.extxyz"
.venv/bin/mlh-analyze doping "$out"/structures/sheets_*.extxyz --model examples/models/wse2_nb_vacancies \
  -o "$out" --dopant Nb --host W --vacancy-species Se --lattice-species W,Nb \
  --sites-per-lattice-atom 2 --density-region cell --species W,Se --window 0,0.2
