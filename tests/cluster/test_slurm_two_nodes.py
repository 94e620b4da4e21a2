"""(f) jobs/slurm/train.sbatch on a two-node Slurm (one slurmd per host):
`sbatch -N 2 --ntasks-per-node=2` completes with mpirun inside the allocation, and with
`srun --mpi=pmix` a USR1 at the job's first checkpoint requeues it, and the requeued job ends
bitwise identical to the uninterrupted one."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from slurmlib import install_tools
from testlib import REPO, assert_bitwise_equal, final_params, ranks_agree

SBATCH = REPO / "jobs" / "slurm" / "train.sbatch"
SETTINGS = ["train.batch_size=16", "train.epochs=2", "train.max_steps=12",
            "checkpoint.every_steps=3", "log.every_steps=3", "log.plots=false", "log.progress=lines"]


@pytest.fixture(scope="module")
def slurm(cluster, tmp_path_factory):
    """Slurm with node1 (slurmctld + slurmd) and node2 (slurmd), 2 CPUs each."""
    reason = install_tools()
    if reason:
        pytest.skip(f"Slurm unavailable: {reason}")
    two_nodes = cluster.slurm(tmp_path_factory.mktemp("slurm2"))
    try:
        two_nodes.start()
        yield two_nodes
    finally:
        two_nodes.stop()


def submit(slurm, tmp_path: Path, name: str, data: Path, launcher: str):
    run_dir, config = tmp_path / name, tmp_path / "cluster.toml"
    config.write_text('[model]\nname = "dcrnn-pgt"\n')  # PGT-I's configuration: the smallest model
    args = ["--job-name", name, "-N", "2", "--ntasks-per-node=2", SBATCH, config, run_dir]
    for item in [f"data.path={data}", *SETTINGS]:
        args += ["--set", item]
    # --bind-to none: both test hosts share this machine's cores, and Open MPI would pin each
    # host's ranks to the same core (a rank spinning in MPI then starves the other host's).
    env = slurm.env(PGTI_LAUNCHER=launcher, PGTI_HOME=REPO, OMP_NUM_THREADS=1, PYTHONUNBUFFERED=1,
                    PGTI_MPIRUN_ARGS="--bind-to none")
    env.pop("PGTI_RANKS_PER_NODE", None)
    job_id = slurm.sbatch(args, cwd=tmp_path, env=env)
    return job_id, run_dir, tmp_path / f"{name}-{job_id}.out"


def test_two_node_job_completes_and_a_requeue_resumes_bit_exactly(slurm, cluster_data, tmp_path):
    assert slurm.srun_pmix_works(), "srun --mpi=pmix cannot start tasks on the two-node Slurm:\n" + slurm.logs()
    ref_id, ref_dir, ref_out = submit(slurm, tmp_path, "reference", cluster_data, "mpirun")
    job_id, run_dir, out = submit(slurm, tmp_path, "requeued", cluster_data, "srun")  # queued behind it

    info = slurm.wait_job(ref_id, timeout=180)
    where = slurm.describe(ref_id, ref_out, ref_dir)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0" and info["Restarts"] == "0", where
    assert info["NodeList"] == "node[1-2]", where
    assert "4 ranks on 2 node(s)" in (ref_dir / "train.log").read_text(), where
    assert ranks_agree(ref_dir, 4), where

    slurm.usr1_after_first_checkpoint(job_id, out, run_dir)
    info = slurm.wait_job(job_id, timeout=180)
    text, log = out.read_text(), (run_dir / "train.log").read_text()
    where = slurm.describe(job_id, out, run_dir)
    assert f"requeueing job {job_id}" in text and info["Restarts"] == "1", where
    assert "stopping on SIGUSR1" in log and "resuming from" in log, where
    assert len(re.findall(r"start \d on 2 node\(s\)", text)) == 2, where  # both attempts on both hosts
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", where
    assert_bitwise_equal(final_params(ref_dir), final_params(run_dir), "requeued (srun) vs uninterrupted (mpirun)")
    assert ranks_agree(run_dir, 4) == ranks_agree(ref_dir, 4)
