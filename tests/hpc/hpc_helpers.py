"""Helpers of the HPC suite: system tools, Lmod in a subshell, a fake pgti for the job
scripts' own decisions. The private Slurm lives in tests/slurmlib.py."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")


def lmod_shell(script: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run `script` in a non-interactive bash that has Lmod's `module` command."""
    return subprocess.run(["bash", "-c", f". {LMOD_INIT} && {script}"], capture_output=True, text=True,
                          timeout=timeout, env=env)


def clean_env(**extra) -> dict:
    """The environment of a fresh login: no venv, no pgti on PATH, no inherited modules."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LMOD", "MODULE", "_LMFILES_", "LOADEDMODULES", "PGTI_", "VIRTUAL_ENV"))
           and k not in ("__LMOD_REF_COUNT_PATH", "MANPATH")}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env.update(extra)
    return env


FAKE_PGTI = """#!/bin/bash
# A stand-in for pgti that keeps its signal protocol (USR1/TERM/INT: "checkpoint", exit 75)
# and starts in milliseconds: for the job scripts' own decisions.
if [ "${1:-}" = --version ]; then echo "pgti 0.0 (fake)"; exit 0; fi
trap 'echo "fake pgti: stopping on a signal"; exit 75' USR1 TERM INT
echo "fake pgti: $*"
touch "$FAKE_PGTI_STARTED"
for _ in $(seq 600); do sleep 0.1; done
exit 0
"""


def fake_installation(root: Path) -> Path:
    """A prefix whose bin/pgti is FAKE_PGTI (use as PGTI_HOME); `root/started` appears when it runs."""
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / "bin" / "pgti").write_text(FAKE_PGTI)
    (root / "bin" / "pgti").chmod(0o755)
    return root
