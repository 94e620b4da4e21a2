"""jobs/slurm/train.sbatch on a real single-node Slurm (2 CPUs, 2 tasks).

One uninterrupted run (PGTI_LAUNCHER=mpirun) and one run that is signalled like at the end of
its time limit (`scancel --signal=USR1 --batch`, what `--signal=B:USR1@...` does) after its
first checkpoint, through srun: the batch shell forwards the signal, pgti checkpoints and
exits 75, the script requeues the job, the job starts again with `--resume auto` and ends
with bit-for-bit the parameters of the uninterrupted run.
"""
from __future__ import annotations

import sys
import time
import warnings

import pytest
from hpc_helpers import clean_env, fake_installation

from testlib import REPO, assert_bitwise_equal, final_params, start_lock_holder, wait_for_files, wait_until

SBATCH = REPO / "jobs" / "slurm" / "train.sbatch"
DEMO = REPO / "jobs" / "configs" / "demo.toml"
# Small enough for ~20 s per attempt on 2 cores; a checkpoint every 4 steps.
SETTINGS = ["train.max_steps=24", "train.batch_size=8", "model.params.hidden_size=8", "checkpoint.every_steps=3",
            "log.every_steps=3", "log.plots=false", "log.progress=lines"]


def submit(slurm, tmp_path, name, data, launcher, hold=False):
    run_dir = tmp_path / name
    args = ["--hold"] * hold + ["--job-name", name, "--ntasks-per-node=2", str(SBATCH), str(DEMO), str(run_dir)]
    for item in [f"data.path={data}", *SETTINGS]:
        args += ["--set", item]
    env = slurm.env(PGTI_LAUNCHER=launcher, PGTI_HOME=REPO, OMP_NUM_THREADS=1, PYTHONUNBUFFERED=1)
    job_id = slurm.sbatch(args, cwd=tmp_path, env=env)
    return job_id, run_dir, tmp_path / f"{name}-{job_id}.out"


@pytest.mark.slow
def test_sbatch_requeues_on_signal_and_resumes_bit_exactly(slurm, demo_data, tmp_path):
    launcher = "srun"
    if not slurm.srun_pmix_works():
        warnings.warn("srun --mpi=pmix does not work here (libpmix.so missing?): testing PGTI_LAUNCHER=mpirun only", stacklevel=2)
        launcher = "mpirun"

    # The reference: uninterrupted, through mpirun inside the allocation.
    ref_id, ref_dir, ref_out = submit(slurm, tmp_path, "reference", demo_data, "mpirun")
    info = slurm.wait_job(ref_id, timeout=150)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", slurm.describe(ref_id, ref_out, ref_dir)
    assert info["Restarts"] == "0"
    assert "training finished (exit 0)" in ref_out.read_text()

    # The same run, signalled after its first checkpoint. It starts while a process of an
    # earlier start of the same job (same job id: what a requeue leaves when the old step is
    # still checkpointing, or ran on a node Slurm lost) still holds the run directory: the
    # start waits for it, and goes on once it is gone (killed here: its lock is taken over).
    job_id, run_dir, out = submit(slurm, tmp_path, "requeued", demo_data, launcher, hold=True)
    leftover = start_lock_holder(run_dir, SLURM_JOB_ID=job_id)
    try:
        slurm.run(["scontrol", "release", job_id])
        wait_until(lambda: out.exists() and "an earlier start of this job" in out.read_text(),
                   lambda: "the wait for the earlier start\n" + slurm.describe(job_id, out, run_dir), timeout=120)
        time.sleep(1)
        assert not (run_dir / "config.toml").exists()  # nothing written while waiting
    finally:
        leftover.kill()
        leftover.wait()

    slurm.usr1_after_first_checkpoint(job_id, out, run_dir)
    info = slurm.wait_job(job_id, timeout=180)
    text = out.read_text()
    log = (run_dir / "train.log").read_text()
    where = slurm.describe(job_id, out, run_dir)

    assert "got SIGUSR1: asking the job step to checkpoint and stop" in text, where
    assert "stopping on SIGUSR1" in log and "checkpointed; resubmit with --resume auto" in log, where
    assert f"requeueing job {job_id}" in text, where
    assert info["Restarts"] == "1", where  # requeued once, same job id
    assert text.count("--resume auto") >= 2 and "start 2 on 1 node(s)" in text, where
    assert "resuming from" in log, where
    assert "took over the lock left by host" in log and f"(PID {leftover.pid}, job {job_id}" in log, where
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", where
    assert "training finished (exit 0)" in text, where
    assert "parameters identical on all 2 ranks" in log, where
    assert_bitwise_equal(final_params(ref_dir), final_params(run_dir))


def test_sbatch_refuses_a_missing_config(slurm, tmp_path):
    """A bad submission fails at once with one clear line and is not requeued."""
    job_id = slurm.sbatch(["--job-name", "bad", "--ntasks-per-node=1", str(SBATCH), "no/such.toml"], cwd=tmp_path,
                          env=slurm.env(PGTI_HOME=REPO))
    info = slurm.wait_job(job_id, timeout=60)
    out = (tmp_path / f"bad-{job_id}.out").read_text()
    assert info["JobState"] == "FAILED" and info["Restarts"] == "0", out
    assert "config no/such.toml not found" in out


def test_sbatch_loads_the_module_and_does_not_requeue_a_failure(slurm, demo_data, tmp_path):
    """PGTI_MODULE: the batch shell (no `module` command of its own) inits Lmod and loads pgti;
    pgti refuses a bad key (exit 2) and the job ends FAILED, not requeued."""
    env = clean_env(SLURM_CONF=str(slurm.conf), PGTI_MODULE="pgti", PGTI_MODULE_PATH=str(REPO / "modules"),
                    PGTI_VENV=sys.prefix)
    job_id = slurm.sbatch(["--job-name", "module", "--ntasks-per-node=1", str(SBATCH), str(DEMO), str(tmp_path / "run"),
                           "--set", f"data.path={demo_data}", "--set", "train.no_such_key=1"], cwd=tmp_path, env=env)
    info = slurm.wait_job(job_id, timeout=90)
    out = (tmp_path / f"module-{job_id}.out").read_text()
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "2:0" and info["Restarts"] == "0", out
    assert f"{sys.prefix}/bin/pgti (pgti 0.1.0)" in out, out
    assert "--set train.no_such_key: unknown key" in out and "training failed (exit 2): not requeueing" in out, out


def test_scancel_is_not_undone_by_a_requeue(slurm, tmp_path):
    """`scancel` sends SIGTERM: pgti checkpoints and exits 75, and the script must not requeue
    (a plain `scontrol requeue` there would bring the cancelled job back)."""
    fake = fake_installation(tmp_path / "fake")
    env = slurm.env(PGTI_HOME=fake, FAKE_PGTI_STARTED=tmp_path / "started")
    job_id = slurm.sbatch(["--job-name", "cancel", "--ntasks-per-node=1", str(SBATCH), str(DEMO), str(tmp_path / "run")],
                          cwd=tmp_path, env=env)
    wait_for_files(tmp_path / "started", timeout=60, poll=0.1, what=f"(job {job_id}: {slurm.job(job_id)})")
    slurm.run(["scancel", job_id])
    info = slurm.wait_job(job_id, timeout=60)
    time.sleep(2)  # a requeue would show up here
    info = slurm.job(job_id)
    out = (tmp_path / f"cancel-{job_id}.out").read_text()
    assert info["JobState"] == "CANCELLED" and info["Restarts"] == "0", (info, out)
    assert "got SIGTERM" in out and "not requeueing" in out, out


def test_srun_without_pmi_is_refused_before_anything_is_written(slurm, demo_data, tmp_path):
    """`srun --mpi=none` starts each task as an MPI world of one: refused with one line, exit 2."""
    run_dir = tmp_path / "run"
    env = slurm.env(OMP_NUM_THREADS=1)
    env.pop("PGTI_RANKS_PER_NODE", None)
    proc = slurm.run(["srun", "-n2", "--mpi=none", sys.executable, "-m", "pgti.cli", "train", "--run-dir", str(run_dir),
                      "--set", f"data.path={demo_data}"], check=False, env=env, cwd=tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert text.count("pgti: error: srun started 2 tasks (SLURM_STEP_NUM_TASKS=2), but MPI sees each as a world of "
                      "one rank") == 1 and text.count("pgti: ") == 1, text
    assert "Traceback" not in text and not run_dir.exists(), text
