#!/usr/bin/env bash
# Does training on longer cells fix the doubled H error of 2x2x3 (108-atom) SiO2 cells?
# 1. 24 rattled 2x2x3 cells of the base-cell recipe (GPAW records with H0; ~30 min on 2 cores,
#    two at a time, ~7 GB each); records 0-15 train, 16-23 are held out;
# 2. the physics benchmark's 72/71- and 108/107-atom test cells of seeds 2026 and 2027 as
#    GPAW records (needs benchmarks/physics_sio2.py run with --seed 2026 and 2027 first: their
#    structures are read from its work folders);
# 3. the bundled model fine-tuned 12 epochs on its own data, and on its data plus the 16 long
#    cells (examples/sio2_finetune_{same_data,long_cells}.yaml);
# 4. benchmarks/model_accuracy.py on the validation cells, the 8 held-out long cells and the
#    test cells. Every step resumes (finished records and epochs are kept).
#   bash benchmarks/long_cells_finetune.sh [WORK2026] [WORK2027]
set -euo pipefail
cd "$(dirname "$0")/.."
work2026=${1:-out/physics_sio2}
work2027=${2:-out/physics_sio2_seed2027}
mlh=.venv/bin/mlh
py=.venv/bin/python
data=example_data/sio2_train_c3
tests=example_data/sio2_physics_test_cells
if [[ ! -f "$data.extxyz" ]]; then
  $mlh recipe sio2 -n 24 --seed 24 --repeat 2x2x3 --rattle 0.02:0.08 --vacancy-relaxation 0.4 -o "$data.extxyz"
fi
$mlh generate "$data.extxyz" -o "$data" --config examples/sio2_gpaw.yaml --baseline --no-progress
cells=()
for work in "$work2026" "$work2027"; do
  for size in 2x2x2 2x2x3; do cells+=("$work/${size}_host.extxyz" "$work/${size}_defect.extxyz"); done
done
$py -c "import sys; from ase.io import read, write; write(sys.argv[1], [read(p) for p in sys.argv[2:]])" \
  "$tests.extxyz" "${cells[@]}"
$mlh generate "$tests.extxyz" -o "$tests" --config examples/sio2_gpaw.yaml --baseline --no-progress
for run in same_data long_cells; do $mlh train "examples/sio2_finetune_$run.yaml" --no-progress; done
held=$(printf "$data/sio2_train_c3-%04d.nc," $(seq 16 23))
t=$tests/sio2_physics_test_cells
$py benchmarks/model_accuracy.py --config examples/sio2_correction_model.yaml \
  --model bundled=examples/models/sio2_correction \
  --model finetune_same_data=example_output/sio2_finetune_same_data/model \
  --model finetune_plus_108=example_output/sio2_finetune_long_cells/model \
  --records "held108=${held%,}" \
  --records "test72=$t-0000.nc,$t-0001.nc,$t-0004.nc,$t-0005.nc" \
  --records "test108=$t-0002.nc,$t-0003.nc,$t-0006.nc,$t-0007.nc" \
  --out benchmarks/results/model_accuracy_sio2_long_cells.json
