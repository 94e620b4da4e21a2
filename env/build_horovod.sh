#!/usr/bin/env bash
# Build (once) and install Horovod into the pgti venv, against its torch and MPI.
#
#   PGTI_VENV=.venv bash env/build_horovod.sh [VERSION]
#
# Horovod 0.28.1 (the newest release) needs its C++ standard raised from 14 to 17 to build
# against torch >= 2.1. The wheel is cached in ${XDG_CACHE_HOME:-$HOME/.cache}/pgti/wheels/
# under a key of the horovod, torch, python and MPI versions, so a rebuild of the venv (or a
# second checkout) reuses it. Extra Horovod build flags (e.g. HOROVOD_GPU_OPERATIONS=NCCL
# from env/sites/*.sh) are passed through from the environment.
set -euo pipefail
version="${1:-0.28.1}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${PGTI_VENV:-$here/../.venv}"
py="$venv/bin/python"
export PATH="$venv/bin:$PATH"
log() { printf '[pgti setup] %s\n' "$*"; }

torch_v="$("$py" -c 'import torch; print(torch.__version__)')"
py_tag="$("$py" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
mpi_v="$( (mpiexec --version 2>&1 || true) | head -n 1 | tr -cs 'A-Za-z0-9.' '-' | sed 's/-$//')"
gpu_ops="${HOROVOD_GPU_OPERATIONS:-none}"
key="horovod-${version}_torch-${torch_v}_${py_tag}_${mpi_v}_gpu-${gpu_ops}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/pgti/wheels/$key"

installed_ok() {
  "$py" - "$version" <<'PY' 2>/dev/null
import sys
import horovod, horovod.torch as hvd
sys.exit(0 if horovod.__version__ == sys.argv[1] and hvd.mpi_built() else 1)
PY
}
if installed_ok && [ -f "$venv/.pgti-horovod-key" ] && [ "$(cat "$venv/.pgti-horovod-key")" = "$key" ]; then
  log "horovod $version already installed ($key)"
  exit 0
fi

# shellcheck disable=SC2012  # (a glob in our own cache directory)
wheel="$(ls "$cache"/horovod-*.whl 2>/dev/null | head -n 1 || true)"
if [ -z "$wheel" ]; then
  log "building horovod $version for $key (about 3 minutes, once; cached in $cache)"
  command -v cmake >/dev/null || "$py" -m pip install -q cmake
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  "$py" -m pip download -q --no-deps --no-binary :all: "horovod==$version" -d "$work"
  tar -xzf "$work"/horovod-"$version".tar.gz -C "$work"
  src="$work/horovod-$version"
  sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' \
    "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
  grep -q 'CMAKE_CXX_STANDARD 17' "$src/horovod/torch/CMakeLists.txt" \
    || { echo "build_horovod.sh: the C++17 patch did not apply to $src" >&2; exit 1; }
  (cd "$src" && HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_TENSORFLOW=1 \
     HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS="${HOROVOD_CPU_OPERATIONS:-MPI}" \
     MAKEFLAGS="-j$(nproc)" \
     "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$work/dist" . )
  mkdir -p "$cache.tmp.$$"
  cp "$work"/dist/horovod-*.whl "$cache.tmp.$$/"
  rm -rf "$cache" && mv "$cache.tmp.$$" "$cache"    # atomic publish: no half-written cache
  # shellcheck disable=SC2012  # (a glob in our own cache directory)
  wheel="$(ls "$cache"/horovod-*.whl | head -n 1)"
else
  log "reusing cached horovod wheel $wheel"
fi
"$py" -m pip install -q --no-deps --force-reinstall "$wheel"

echo "$key" > "$venv/.pgti-horovod-key"
installed_ok || { echo "build_horovod.sh: horovod installed but horovod.torch does not import with MPI" >&2; exit 1; }
log "horovod $version installed ($key)"
