"""The `pgti` command line itself: help for every command without importing torch."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pgti.cli import COMMANDS
from testlib import pgti_command, run_into_closed_pipe, synth_dataset


@pytest.mark.parametrize("argv", [[]] + [[g, c] if g else [c] for g, c, _, _ in COMMANDS])
def test_help_never_imports_torch(argv):
    """`pgti ... --help` answers at once on a login node: no torch (seconds to import, ~0.2 GB)."""
    probe = ("import sys, runpy; sys.argv = ['pgti', *sys.argv[1:], '--help']\n"
             "try:\n    runpy.run_module('pgti.cli', run_name='__main__')\n"
             "except SystemExit as e:\n    assert e.code in (0, None), e.code\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("NO-TORCH"), f"pgti {' '.join(argv)} --help imported torch"


def test_a_closed_pipe_is_no_traceback(tmp_path):
    """`pgti data info FILE | head`: the reader is gone before pgti prints."""
    data = synth_dataset(tmp_path / "d.h5", num_nodes=8, num_steps=300, seed=1)
    done = run_into_closed_pipe(pgti_command("data", "info", data), timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
