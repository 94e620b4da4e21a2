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


def wait_for_log(path: Path, pattern: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until the file at `path` matches the regex `pattern` while `proc` runs; fail with
    what the process printed if it ends first, or on timeout."""
    import re
    import time

    deadline = time.time() + timeout
    while not (path.exists() and re.search(pattern, path.read_text())):
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (status {proc.returncode}) before {path} showed "
                                 f"{pattern!r}:\n{proc.stdout.read() if proc.stdout else ''}")
        if time.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {pattern!r} in {path}")
        time.sleep(0.1)


def signal_after_log(proc: subprocess.Popen, path: Path, pattern: str, send, timeout: float = 120) -> str:
    """Once the log at `path` matches `pattern`, call `send()` (deliver a signal), wait for
    `proc` to end and return its output; `proc` is killed if anything fails on the way."""
    try:
        wait_for_log(path, pattern, proc)
        send()
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return out
