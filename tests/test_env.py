"""The environment env/setup.sh builds: Horovod with MPI, real mpirun collectives."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from testlib import REPO, run_mpi


def test_horovod_single_process_size_is_1():
    out = subprocess.run([sys.executable, "-c", "import horovod.torch as hvd; hvd.init(); print(hvd.size())"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1"


@pytest.mark.mpi
@pytest.mark.parametrize("world", [2, 3])
def test_horovod_allreduce_and_broadcast_under_mpirun(world):
    proc = run_mpi(world, [Path(__file__).parent / "mpi" / "hvd_collectives.py"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                  key=lambda r: r["rank"])
    assert [r["rank"] for r in rows] == list(range(world))
    total = sum(range(1, world + 1))
    for r in rows:
        assert r["size"] == world and r["mpi_built"]
        assert r["sum"] == [float(total)] * 3
        assert r["avg"] == pytest.approx([total / world] * 3)
        assert r["w"] == [1.0] * 4  # rank 0's value everywhere


def test_pgti_version_console_script():
    out = subprocess.run(["pgti", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("pgti ")


def test_ci_calls_the_test_command():
    assert "bash tests/run.sh" in (REPO / ".ci" / "run").read_text()
