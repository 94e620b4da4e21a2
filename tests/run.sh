#!/usr/bin/env bash
# The one test command: sets up the environment if missing, then runs the whole suite.
#   bash tests/run.sh [pytest args...]     e.g. bash tests/run.sh -m "not slow" -x
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
bash env/setup.sh
# shellcheck disable=SC1091
. env/activate.sh
export PYTHONUNBUFFERED=1
exec python -m pytest "$@"
