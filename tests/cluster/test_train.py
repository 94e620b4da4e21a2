"""`pgti train` across two hosts, two ranks each:
(d) Horovod and DDP end with parameters identical on all 4 ranks, and bitwise identical to a
    single-host W=4 run of the same config (one torch thread per rank);
(e) SIGKILL of a rank on host 2 mid-epoch ends the whole job with one message, and
    `--resume auto` then ends bitwise identical to the uninterrupted run;
(g) an input error that only a rank of host 2 sees ends every host with one line, exit 2."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testlib import (
    assert_bitwise_equal,
    final_params,
    latest_checkpoint,
    metrics_rows,
    mpirun_command,
    rank_pid,
    ranks_agree,
    train_command,
    wait_for_files,
)

# 8 steps per epoch at W=4: 12 steps cross an epoch's end and its validation.
RUN = ["model.name=dcrnn-pgt", "train.batch_size=16", "train.epochs=2", "train.max_steps=12",
       "checkpoint.every_steps=3", "log.every_steps=4", "log.plots=false", "data.prefetch=false"]


def across(cluster, data, run_dir, *settings, timeout=240, env=None) -> subprocess.CompletedProcess:
    """`pgti train` with 4 ranks on 2 hosts (mpirun on node1, the agent starts node2)."""
    return cluster.mpirun(4, train_command(data, run_dir, *RUN, *settings), timeout=timeout, env=env)


def on_one_host(data, run_dir, *settings, timeout=240) -> subprocess.CompletedProcess:
    """The same run with 4 ranks on this one host."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PGTI_RANKS_PER_NODE", None)
    return subprocess.run(mpirun_command(4) + train_command(data, run_dir, *RUN, *settings), capture_output=True,
                          text=True, timeout=timeout, env=env)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def runs(cluster, cluster_data, tmp_path_factory) -> dict:
    """runs(engine, where) -> the run directory of that training, trained on first use;
    where is "across" (2 hosts x 2 ranks) or "one-host" (1 host x 4 ranks)."""
    base = tmp_path_factory.mktemp("cluster-train")
    done: dict = {}

    def get(engine: str, where: str) -> Path:
        run_dir = base / f"{engine}-{where}"
        if run_dir not in done:
            setting = f"dist.engine={engine}"
            done[run_dir] = ok(across(cluster, cluster_data, run_dir, setting) if where == "across"
                               else on_one_host(cluster_data, run_dir, setting))
        return run_dir

    return get


@pytest.mark.parametrize("engine", ["horovod", "ddp"])
def test_two_hosts_train_exactly_like_one(runs, engine):
    across_dir = runs(engine, "across")
    log = (across_dir / "train.log").read_text()
    assert "4 ranks on 2 node(s)" in log, log[-2000:]
    assert "[rank 0/4 node 0]" in log
    digest = ranks_agree(across_dir, 4)
    assert digest, log[-2000:]
    if engine == "ddp":  # the rendezvous came from the launch: an address on node1's eth0, not a name
        assert "rendezvous at tcp://10.200.0.1:" in log, log[-2000:]
    one_host = runs(engine, "one-host")
    assert "4 ranks on 1 node(s)" in (one_host / "train.log").read_text()
    assert_bitwise_equal(final_params(one_host), final_params(across_dir), f"{engine}: 2 hosts x 2 vs 1 host x 4")
    assert ranks_agree(one_host, 4) == digest
    print(f"\n  {engine}: parameters sha256 {digest} on 4 ranks, 2 hosts x 2 and 1 host x 4")


def test_sigkill_of_a_rank_on_host2_ends_the_job_and_resume_is_exact(cluster, cluster_data, runs, tmp_path):
    reference = runs("horovod", "across")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for attempt in range(3):  # the run is short: on a fast machine it may end before the kill lands
        run_dir = tmp_path / f"killed{attempt}"
        proc = subprocess.Popen(cluster.mpirun_command(4, env=env) + train_command(cluster_data, run_dir, *RUN,
                                                                                   "dist.engine=horovod"),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                env=env)
        try:
            wait_for_files(run_dir / "checkpoints" / "step-000000003.pt", proc, timeout=120)
            try:
                os.kill(rank_pid(run_dir, 3), signal.SIGKILL)  # rank 3 runs on node2
            except (AssertionError, ProcessLookupError):
                pass  # already gone: the run ended first
            killed_at = time.monotonic()
            out, _ = proc.communicate(timeout=60)
            ended_after = time.monotonic() - killed_at
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode != 0 or "exit status 0" not in (run_dir / "train.log").read_text():
            break
    else:
        pytest.fail("three runs ended before the SIGKILL reached them")
    assert ended_after < 30, out[-3000:]
    assert proc.returncode not in (0, 75), out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    # One report, from MPI: prterun's notice of the killed rank, or (when a survivor's TCP link
    # to it broke first, a race) the survivor's "Socket closed" abort. Nothing from every rank.
    killed = out.count("exited on signal 9")
    link = out.count("*** An error occurred in Socket closed")
    assert killed + link == 1 and out.count("prterun") <= 2, out[-3000:]
    if killed:
        assert "rank 3" in out and "node2" in out, out[-3000:]
    left = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True)
    assert not left.stdout.strip(), f"processes left behind: {left.stdout}"
    assert latest_checkpoint(run_dir)["global_step"] < 12  # it was killed before its end (step 12)

    ok(across(cluster, cluster_data, run_dir, "dist.engine=horovod", "--resume=auto"))
    assert_bitwise_equal(final_params(reference), final_params(run_dir), "killed and resumed vs uninterrupted")
    assert metrics_rows(run_dir) == metrics_rows(reference)
    print(f"\n  resumed after SIGKILL on node2: sha256 {ranks_agree(run_dir, 4)} (uninterrupted "
          f"{ranks_agree(reference, 4)})")


def only_on_node1(cluster, path: Path, private: str) -> str:
    """Copy `path` to node1's own /tmp (a node-local disk): node2 has no such file."""
    proc = cluster.run_on("node1", ["cp", path, private])
    assert proc.returncode == 0, proc.stderr
    return private


@pytest.mark.parametrize("case", ["dataset", "run-dir", "address"])
def test_an_input_error_on_host2_ends_every_host_with_one_line(cluster, cluster_data, tmp_path, case):
    data, run_dir, extra, env = cluster_data, tmp_path / "run", [], None
    if case == "dataset":  # every leader reads: node2's cannot
        data = only_on_node1(cluster, cluster_data, f"/tmp/local-{os.getpid()}.h5")
        extra, message = ["data.load=leaders"], f"{data}: no such file on host node2"
    elif case == "run-dir":  # rank 0 writes the run on node1's own disk: a requeued job on other nodes would lose it
        run_dir = Path(f"/tmp/local-run-{os.getpid()}")
        message = f"run directory {run_dir} is not visible from host node2"
    else:  # DDP told to meet at an address no host has: probed, refused, no hang in init_process_group
        extra, env = ["dist.engine=ddp"], {**os.environ, "PGTI_MASTER_ADDR": "10.200.0.99"}
        message = "rank 0's address 10.200.0.99 (PGTI_MASTER_ADDR=10.200.0.99) is not reachable over TCP"
    began = time.monotonic()
    proc = across(cluster, data, run_dir, *extra, timeout=90, env=env)
    text = proc.stdout + proc.stderr
    assert time.monotonic() - began < 60, text[-3000:]
    assert proc.returncode == 2, text[-3000:]
    assert text.count(message) == 1 and text.count("pgti: error") == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
