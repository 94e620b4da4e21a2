"""The `pgti` command line itself: help for every command without importing torch."""
from __future__ import annotations

import subprocess
import sys

import pytest

from pgti.cli import COMMANDS


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
