"""Helpers every test suite may import (`from testlib import run_mpi`): real MPI launches."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def mpirun_command(np_: int) -> list[str]:
    exe = shutil.which("mpirun") or shutil.which("mpiexec")
    if exe is None:
        pytest.skip("no mpirun on PATH (run bash env/setup.sh)")
    cmd = [exe, "-np", str(np_)]
    if np_ > (os.cpu_count() or 1):
        cmd.append("--oversubscribe")
    return cmd


def run_mpi(np_: int, args: list[str], timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """Launch `python ARGS` under a real `mpirun -np N`."""
    return subprocess.run(mpirun_command(np_) + [sys.executable, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kw)
