#!/usr/bin/env bash
# The bundled SiO2 committee (examples/models/sio2_correction_committee): the bundled SiO2
# correction model and two more members of its architecture (parameter seed 1 on the same
# 164 records; all 212 records of today's recipe, 100 epochs), averaged by `mlh ensemble`, and
# its Harris-Foulkes share fitted on the base split's validation cells and the 8 held-out
# 2x2x3 recipe cells (benchmarks/harris_share.py). About 2.5 h on 2 cores; `mlh train` and
# harris_share.py resume after a kill. Data first: bash examples/make_sio2_dataset.sh, and
# for the 8 held-out 2x2x3 cells step 1 of benchmarks/long_cells_finetune.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
mlh=.venv/bin/mlh
$mlh train examples/sio2_committee_seed1_model.yaml
$mlh train examples/sio2_committee_c212_model.yaml
$mlh ensemble -o examples/models/sio2_correction_committee examples/models/sio2_correction \
  example_output/sio2_seed1/model example_output/sio2_c212/model
.venv/bin/python benchmarks/harris_share.py --model examples/models/sio2_correction_committee \
  --config examples/sio2_correction_model.yaml \
  --records example_data/sio2_train_c3/sio2_train_c3-00{16..23}.nc \
  --out benchmarks/results/harris_share_sio2_committee.json --write-model
