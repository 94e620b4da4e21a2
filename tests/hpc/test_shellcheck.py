"""Every shell script of the project passes `shellcheck` (Debian's, installed by
tests/hpc/install.sh) and `bash -n`: *.sh, *.sbatch, *.pbs anywhere, and the scripts with a
shell shebang in env/, jobs/, tests/ and .ci/ (e.g. .ci/run)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from testlib import REPO

SUFFIXES = (".sh", ".sbatch", ".pbs")
SCRIPT_DIRS = ("env", "jobs", "tests", ".ci")
PRUNE = {".git", ".venv", "venv", "build", "dist", "data", "runs", "bench-out", "__pycache__", ".pytest_cache",
         "node_modules"}


def project_files() -> list[Path]:
    """The project's files: git's view (tracked + untracked, not ignored), else a pruned walk."""
    proc = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                          capture_output=True, timeout=60) if shutil.which("git") else None
    if proc is not None and proc.returncode == 0:
        return [REPO / p for p in proc.stdout.decode().split("\0") if p and (REPO / p).is_file()]
    found = []
    for top, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in PRUNE]
        found += [Path(top) / f for f in files]
    return found


def has_shell_shebang(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            first = fh.readline(200)
    except OSError:
        return False
    return first.startswith(b"#!") and any(sh in first for sh in (b"bash", b"/sh", b" sh"))


def shell_scripts() -> list[Path]:
    scripts = []
    for path in project_files():
        rel = path.relative_to(REPO)
        if path.suffix in SUFFIXES or (rel.parts[0] in SCRIPT_DIRS and has_shell_shebang(path)):
            scripts.append(path)
    return sorted(set(scripts))


def test_the_project_has_the_expected_scripts():
    names = {str(p.relative_to(REPO)) for p in shell_scripts()}
    for expected in ("jobs/slurm/train.sbatch", "jobs/pbs/train.pbs", "jobs/pbs/gpu_affinity.sh", "env/setup.sh",
                     "env/activate.sh", "tests/run.sh", ".ci/run", "tests/hpc/install.sh"):
        assert expected in names, expected


def test_shellcheck_passes_on_every_shell_script(hpc_tools):
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    scripts = shell_scripts()
    proc = subprocess.run(["shellcheck", "--format=gcc", *map(str, scripts)], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, f"shellcheck on {len(scripts)} scripts:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("script", ["jobs/slurm/train.sbatch", "jobs/pbs/train.pbs", "jobs/pbs/gpu_affinity.sh"])
def test_job_scripts_parse_and_are_executable(script):
    path = REPO / script
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert os.access(path, os.X_OK), f"{script} must be executable (chmod +x)"
