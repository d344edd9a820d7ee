#!/usr/bin/env bash
# Data, model and repulsion of the SiO2 physics benchmark (benchmarks/physics_sio2.py):
# 24 rattled (0.02-0.08 Å), strained (±2 %) 2x2x1 quartz cells (36 atoms), half with one O
# vacancy whose two Si neighbours are pulled together by up to 0.4 Å each (the Si-Si bond of
# the relaxed vacancy), computed with GPAW (examples/sio2_gpaw.yaml; energies and forces as labels,
# the zeroth-step H0 beside H); then the direct model (examples/sio2_model.yaml) and the band
# route's repulsion fitted to them; then 96 more such cells (another seed; training-only, so the
# 5 validation cells of the first 24 stay fixed; ~11 min per 24 on 2 cores), the relaxation data
# (examples/make_sio2_relax_dataset.sh: snapshots of GPAW relaxations of host and O-vacancy
# cells, and rattled cells) and the correction model (examples/sio2_correction_model.yaml)
# fitted to all of them. Records whose packs are committed (examples/data/NAME: H - H0
# rounded to 1e-5 eV, structure, labels; examples/data/README.md) are unpacked instead of
# recomputed: GPAW rebuilds S and H0 without an SCF (~15 s per record per core, against
# ~45 s for the SCF record, and the GPAW relaxations are skipped). Re-running resumes every
# step (finished records, relaxations and epochs are kept).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-example_data}
mlh=.venv/bin/mlh
packs=examples/data
# unpack_set NAME: records of the committed packs $packs/NAME (if any) into $out/NAME
unpack_set() {
  if [[ -d "$packs/$1" ]]; then $mlh unpack "$packs/$1" -o "$out/$1" --no-progress; fi
}
# base_cells NAME COUNT SEED: COUNT base cells of the recipe above, GPAW records in $out/NAME
# (records unpacked from packs are not recomputed)
base_cells() {
  unpack_set "$1"
  $mlh recipe sio2 -n "$2" --seed "$3" --repeat 2x2x1 --rattle 0.02:0.08 --vacancy-relaxation 0.4 \
    -o "$out/$1.extxyz"
  $mlh generate "$out/$1.extxyz" -o "$out/$1" --config examples/sio2_gpaw.yaml --baseline
}
base_cells sio2_train 24 21
$mlh train examples/sio2_model.yaml
.venv/bin/python examples/fit_repulsion.py example_output/sio2_training/model "$out/sio2_train"
base_cells sio2_train_more 96 22
if [[ -d "$packs/sio2_relax" ]]; then
  unpack_set sio2_relax
else
  bash examples/make_sio2_relax_dataset.sh "$out"
fi
$mlh train examples/sio2_correction_model.yaml
# 80 more base cells (another seed; training only) for the first-step model's learning curve
# past the 120 above (docs/predictor.md, "What limits the SiO2 on-site error now"): the
# committed packs of the first of them are unpacked, the rest computed (~36 s per cell on 2
# cores with 2 jobs). No model here trains on them yet.
base_cells sio2_train_extra 80 23
