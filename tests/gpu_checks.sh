#!/usr/bin/env bash
# The GPU checks, one prepared script for a CUDA machine (about 5 minutes on one H200):
# the GPU tests (pytest -m gpu), `pgti bench epoch --device cuda` and `pgti bench model` on
# CUDA (eager, and a3tgcn/gwnet compiled), all on the pems-bay preset. Results (logs, JSON) go to OUTDIR.
#   bash tests/gpu_checks.sh [OUTDIR]          (default /tmp/pgti-gpu)
# Runs from a checkout without installing it (PYTHONPATH=app); PGTI_PYTHON picks the
# interpreter (default python3, which must have torch with CUDA, h5py and mpi4py + an MPI).
set -uo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo" || exit 2
out="${1:-/tmp/pgti-gpu}"
mkdir -p "$out"
py="${PGTI_PYTHON:-python3}"
export PYTHONPATH="$repo/app${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_osc="^ucx"
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "tests/gpu_checks.sh: no CUDA device visible to $py" >&2
  exit 2
fi
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee "$out/device.txt"
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUTDIR/NAME.log
  local name="$1" limit="$2"
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  [ "$rc" = 0 ] || { echo "== $name failed (exit $rc)"; status=1; }
}
data="$out/pems-bay.h5"
[ -f "$data" ] || step synth 120 "$py" -m pgti.cli data synth --preset pems-bay --out "$data"
step gpu-tests 300 "$py" -m pytest -q -m gpu tests -p no:cacheprovider -o addopts="-ra --strict-markers"
for model in dcrnn-pgt dcrnn; do
  step "epoch-$model" 150 "$py" -m pgti.cli bench epoch --data "$data" --model "$model" --device cuda \
    --steps 10 --warmup 2 --json "$out/epoch-$model.json"
done
for model in dcrnn-pgt dcrnn gwnet a3tgcn; do
  step "model-$model" 120 "$py" -m pgti.cli bench model --model "$model" --data "$data" --device cuda \
    --batch-size 64 --json "$out/model-$model.json"
done
for model in a3tgcn gwnet; do  # model.compile: does inductor's fusion pay on the GPU?
  step "model-$model-compiled" 150 "$py" -m pgti.cli bench model --model "$model" --data "$data" --device cuda \
    --batch-size 64 --compile --no-memory --json "$out/model-$model-compiled.json"
done
exit "$status"
