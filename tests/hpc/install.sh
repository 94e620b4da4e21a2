#!/usr/bin/env bash
# Install the real HPC components the tests/hpc suite drives, when missing (Debian/Ubuntu, root):
#   slurmctld slurmd slurm-client munge   a single-node Slurm on localhost
#   libpmix-dev                           the libpmix.so that Slurm's `srun --mpi=pmix` opens
#   lmod                                  `module load pgti` (Lua and Tcl module files)
#   the shellcheck package                lints every shell script of the project
#
#   bash tests/hpc/install.sh        # exit 0: everything present; 3: cannot install (reason on stderr)
#
# Called by the session fixture of tests/hpc (conftest.py); a machine without root or apt
# gets its tests skipped with the reason printed here.
set -euo pipefail

packages=(slurmctld slurmd slurm-client munge libpmix-dev lmod shellcheck)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "tests/hpc/install.sh: missing ${missing[*]} and no apt-get here (install them by hand)" >&2
  exit 3
fi
if [ "$(id -u)" != 0 ]; then
  echo "tests/hpc/install.sh: missing ${missing[*]}; installing needs root: sudo apt-get install ${missing[*]}" >&2
  exit 3
fi
echo "[pgti tests] installing ${missing[*]} (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt_install() { apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
if ! apt_install 2>/dev/null; then
  # First use on a fresh machine: the package lists are not there yet.
  apt-get update -q >/dev/null || { echo "tests/hpc/install.sh: apt-get update failed" >&2; exit 3; }
  apt_install || { echo "tests/hpc/install.sh: apt-get install ${missing[*]} failed" >&2; exit 3; }
fi
