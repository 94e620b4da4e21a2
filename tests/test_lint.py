"""The linter as a habit: `ruff check app tests` (rules in pyproject.toml) is clean."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from testlib import REPO


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: run `bash env/setup.sh` (env/requirements.txt pins it)")
    proc = subprocess.run([ruff, "check", "--no-cache", "app", "tests"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"ruff found problems (fix them, or `ruff check --fix app tests`):\n{proc.stdout}"
