#!/usr/bin/env bash
# The demo job on this machine, from a fresh clone:
#   environment (if missing) -> demo dataset -> describe it -> train -> evaluate.
#
#   bash jobs/local.sh              # everything, in ./runs/demo and ./data/demo.h5
#   NP=2 bash jobs/local.sh         # MPI ranks for training (default 2)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
np_ranks="${NP:-2}"
data="${PGTI_DEMO_DATA:-data/demo.h5}"
run_dir="${PGTI_DEMO_RUN:-runs/demo}"

bash env/setup.sh
# shellcheck disable=SC1091
. env/activate.sh

if [ ! -f "$data" ]; then
  echo "== making the demo dataset $data (synthetic: 64 sensors x 4 weeks of 5-minute speeds)"
  pgti data synth --preset tiny --steps 8064 --seed 0 --out "$data" --quiet
fi
echo "== the demo dataset"
pgti data info "$data"

echo "== training on $np_ranks MPI ranks -> $run_dir"
mpirun -np "$np_ranks" pgti train --config jobs/configs/demo.toml --run-dir "$run_dir" --resume auto \
  --set data.path="$data"
echo "== evaluating the best checkpoint on the test windows (last-value forecast alongside)"
pgti evaluate "$run_dir" --split test
echo "== plots: $run_dir/plots/loss.png and $run_dir/plots/val_mae.png; log: $run_dir/train.log"
