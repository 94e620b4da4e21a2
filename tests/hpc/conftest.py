"""Fixtures of the HPC suite (helpers live in hpc_helpers.py): system tools, a private
single-node Slurm, the demo dataset."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slurmlib import SlurmCluster, install_tools


@pytest.fixture(scope="session")
def hpc_tools() -> None:
    """Slurm, munge, libpmix, Lmod and shellcheck, installed by tests/hpc/install.sh when missing."""
    reason = install_tools()
    if reason:
        pytest.skip(f"HPC tools unavailable: {reason}")


@pytest.fixture(scope="module")
def slurm(hpc_tools, tmp_path_factory):
    """A running Slurm with this host as its one node (2 CPUs); stopped after the module's tests."""
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except (RuntimeError, OSError) as exc:
        cluster.stop()
        pytest.skip(f"Slurm could not start here: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """The demo dataset of the job tests: `pgti data synth --preset tiny --steps 2000`."""
    path = tmp_path_factory.mktemp("hpcdata") / "demo.h5"
    subprocess.run([sys.executable, "-m", "pgti.cli", "data", "synth", "--preset", "tiny", "--steps", "2000",
                    "--seed", "0", "--out", str(path), "--quiet"], check=True, timeout=120)
    return path
