"""pgti.distributed.world: communicators, logging, small collectives, singleton runs, terminals."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from distributed_helpers import HERE, LOAD_CONFIGS, load_run, mpi_env, write_small_dataset

from testlib import run_mpi


@pytest.mark.mpi
@pytest.mark.parametrize("ranks, ranks_per_node", LOAD_CONFIGS)
def test_world_communicators_and_collectives(tmp_path_factory, virtual_hosts, ranks, ranks_per_node):
    rows = load_run(tmp_path_factory.getbasetemp(), ranks, ranks_per_node, virtual_hosts)["rows"]
    per_node = ranks_per_node or ranks  # one real node holds every rank
    assert [r["rank"] for r in rows] == list(range(ranks))
    for r in rows:
        assert r["size"] == ranks
        assert r["node"] == r["rank"] // per_node
        assert r["local_rank"] == r["rank"] % per_node
        assert r["local_size"] == min(per_node, ranks - r["node"] * per_node)
        assert r["num_nodes"] == -(-ranks // per_node)
        assert r["is_leader"] == r["has_leaders_comm"] == (r["local_rank"] == 0)


@pytest.mark.mpi
@pytest.mark.parametrize("ranks, ranks_per_node", [(3, 2)])
def test_rank_prefixed_logging(tmp_path_factory, virtual_hosts, ranks, ranks_per_node):
    run = load_run(tmp_path_factory.getbasetemp(), ranks, ranks_per_node, virtual_hosts)
    out, log = run["stdout"], run["log"]
    assert out.count("[rank 0/3 node 0] INFO pgti: info from rank 0") == 1
    assert "info from rank 1" not in out and "info from rank 2" not in out  # others: WARNING and up
    for rank, node in [(0, 0), (1, 0), (2, 1)]:
        line = f"[rank {rank}/3 node {node}] WARNING pgti: warning from rank {rank}"
        assert out.count(line) == 1 and log.count(line) == 1  # the run's log file has every rank
    assert log.count("INFO pgti: info from rank 0") == 1 and "info from rank 1" not in log


def test_single_process_without_launcher(tmp_path):
    path = write_small_dataset(tmp_path / "d.h5")
    proc = subprocess.run([sys.executable, HERE / "mpi_single.py", "ok", path], capture_output=True,
                          text=True, timeout=120, env=mpi_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["size"] == row["num_nodes"] == row["local_size"] == 1 and row["has_leaders_comm"]

    failed = subprocess.run([sys.executable, HERE / "mpi_single.py", "fail"], capture_output=True, text=True,
                            timeout=120, env=mpi_env())
    assert failed.returncode == 2
    assert failed.stderr.count("pgti: error: deliberate single-process failure") == 1
    assert "Traceback" not in failed.stderr


TERMINAL_PROBE = "from pgti.distributed.world import stdout_is_terminal; print('terminal', stdout_is_terminal())"


@pytest.mark.mpi
def test_progress_bar_only_when_the_launchers_output_is_a_terminal():
    """Open MPI gives every rank a pty even when mpirun writes to a log file: the ranks must
    look at mpirun's own stdout (a batch log gets log lines, a person's terminal a bar)."""
    import shlex
    import shutil

    from testlib import mpirun_command

    to_file = run_mpi(2, ["-c", TERMINAL_PROBE])  # mpirun's stdout: a pipe, as in a batch job
    assert to_file.returncode == 0, to_file.stderr
    assert to_file.stdout.count("terminal False") == 2, to_file.stdout
    if shutil.which("script") is None:
        pytest.skip("no `script` (util-linux) to give mpirun a terminal")
    launcher = mpirun_command(2)
    version = subprocess.run([launcher[0], "--version"], capture_output=True, text=True).stdout
    if "Open MPI" not in version:
        pytest.skip("the pty-per-rank behaviour checked here is Open MPI's")
    cmd = shlex.join(launcher + [sys.executable, "-c", TERMINAL_PROBE])
    on_tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=120)
    assert on_tty.returncode == 0, on_tty.stdout + on_tty.stderr
    assert on_tty.stdout.count("terminal True") == 2, on_tty.stdout


def test_torchrun_is_refused_before_anything_is_written(tmp_path):
    """torchrun starts processes without MPI: each would be a one-rank run in one run directory."""
    path = write_small_dataset(tmp_path / "d.h5")
    torchrun = Path(sys.executable).parent / "torchrun"
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "pgti.cli", "train", "--run-dir", tmp_path / "run",
                           "--set", f"data.path={path}"], capture_output=True, text=True, timeout=120, env=mpi_env())
    ours = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("pgti: ")]
    assert proc.returncode != 0 and ours == [
        "pgti: error: launched by torchrun (WORLD_SIZE=2), which starts processes without MPI: each of the 2 would be "
        "a one-rank run of its own, all in one run directory; pgti's ranks come from MPI: launch with "
        "`mpirun -np 2 pgti ...` (or `srun --mpi=pmix pgti ...` in a Slurm job)"], proc.stderr[-3000:]
    assert "exitcode  : 2" in proc.stderr  # both processes exit 2 (torchrun itself reports a failure: 1)
    assert not (tmp_path / "run").exists()
