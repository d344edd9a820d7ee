#!/usr/bin/env bash
# Transport through WSe2 devices with Se vacancies, predicted by the bundled model
# (examples/models/wse2_vacancies): T(E), I(V) and figures in OUT/ (default
# example_output/transport). Devices (examples/transport_devices.py): `small` (16 x 1 cells,
# one Se vacancy: a line of vacancies 5.75 Å apart along y), `sheet` (16 x 2, two Se vacancies
# at scattered sites) and `line` (16 x 2, a line of Se vacancies across the width). Transport
# along x; electrodes from each device's pristine ends (4 cells each). With --gpaw, also the
# GPAW reference H of `small` (mlh generate, ~1 h on 2 shared cores) and the comparison of
# benchmarks/transport.py. Re-running skips finished records.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-example_output/transport}
py=.venv/bin/python
mkdir -p "$out"
for name in small sheet line; do
  [ -f "$out/$name.extxyz" ] || $py examples/transport_devices.py "$out/$name.extxyz" --only "$name"
done
.venv/bin/mlh infer examples/models/wse2_vacancies "$out"/small.extxyz "$out"/sheet.extxyz "$out"/line.extxyz \
  -o "$out/predicted"
for name in small sheet line; do
  .venv/bin/mlh-analyze transport "$out/predicted/$name-0000.nc" -o "$out/$name.transport.nc" \
    --electrode-cells 16 --energies -1.6,1.6 --points 81 --bias 0.5,1.0,1.5 --kpts 1x2x1 \
    --plot "$out/$name.transport.png"
done
if [ "${2:-}" = "--gpaw" ]; then
  .venv/bin/mlh generate "$out/small.extxyz" -o "$out/gpaw" --config examples/wse2_gpaw.yaml
  $py benchmarks/transport.py --work "$out/benchmark" --skip-cost --gpaw-record "$out/gpaw/small-0000.nc"
fi
