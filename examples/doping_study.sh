#!/usr/bin/env bash
# The bundled doping study (seed 001, sections 2.2.2 and 4.3-4.4, on a system that trains
# cheaply): WSe2 monolayers with Nb on W sites (p-type) and Se vacancies, random Nb and
# vacancy rates and +-2 % strain (the training range). The bundled model
# (examples/models/wse2_nb_vacancies, trained on 3x2 cells) predicts every Hamiltonian on a
# local Dask cluster; the hole concentration is the W+Se PDOS in E_F + [0, 0.2] eV; the
# Bayesian linear model relates it to the Nb:W ratio, the mass density and the Se vacancy
# rate. Results in OUT/ (default example_output/doping): hole_concentrations.nc,
# posterior.nc, posterior_summary.nc, summary.txt, design.png, posterior_pairs.png.
# Re-running resumes. The same command serves Ni-doped a-HfO2 on WSe2 with
# --dopant Ni --host Hf --lattice-species W and that model.
#
#   bash examples/doping_study.sh [OUT]          # quick: 9 sheets of 240-3,000 atoms
#   bash examples/doping_study.sh [OUT] --full   # the full study: 25 sheets (docs/doping.md)
#
# Both reach a 3,000-atom sheet, whose spectrum takes the sparse Γ route.
set -euo pipefail
cd "$(dirname "$0")/.."
out=example_output/doping
full=0
for arg in "$@"; do
  case "$arg" in
    --full) full=1 ;;
    -*) echo "error: unknown option $arg (only --full)" >&2; exit 1 ;;
    *) out=$arg ;;
  esac
done
mlh=.venv/bin/mlh
rates=(--dopant-rate 0:0.03 --vacancy-rate 0:0.02)
if [ "$full" = 1 ]; then
  counts=(14 8 2 1); stats=()
else
  counts=(6 2 0 1); stats=(--chains 4 --draws 1000 --tune 1000)
fi
$mlh recipe wse2 -n "${counts[0]}" --repeat 8x5 --seed 31 "${rates[@]}" -o "$out/structures/sheets_240.extxyz"
$mlh recipe wse2 -n "${counts[1]}" --repeat 12x7 --seed 32 "${rates[@]}" -o "$out/structures/sheets_504.extxyz"
if [ "${counts[2]}" -gt 0 ]; then
  $mlh recipe wse2 -n "${counts[2]}" --repeat 25x12 --seed 33 "${rates[@]}" -o "$out/structures/sheets_1800.extxyz"
fi
$mlh recipe wse2 -n "${counts[3]}" --repeat 25x20 --seed 34 "${rates[@]}" -o "$out/structures/sheets_3000.extxyz"
.venv/bin/mlh-analyze doping "$out"/structures/sheets_*.extxyz --model examples/models/wse2_nb_vacancies \
  -o "$out" --dopant Nb --host W --vacancy-species Se --lattice-species W,Nb \
  --sites-per-lattice-atom 2 --density-region cell --species W,Se --window 0,0.2 "${stats[@]}"
