"""jobs/pbs/train.pbs with a faked PBS Pro around it (PBS cannot run here).

The script's body runs for real: `PBS_NODEFILE` lists localhost twice (one node, two slots),
`PBS_JOBID`/`PBS_O_WORKDIR`/`PBS_O_QUEUE` are set, `qstat -f` is a stub printing the job's
attributes, `qsub` a stub that records its arguments, and `mpiexec` is the installed Open MPI.
Link 1 gets a walltime that leaves pgti ~1 s: it checkpoints, exits 75 and the script submits
link 2 (`-W depend=afterany:...` with the same resources and PGTI_* settings); link 2, run
from exactly what qsub was given, resumes and finishes.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hpc_helpers import clean_env

from testlib import REPO, signal_after_log

PBS = REPO / "jobs" / "pbs" / "train.pbs"
DEMO = REPO / "jobs" / "configs" / "demo.toml"
# dist.engine=ddp: Horovod's start-up costs seconds per link, and test_slurm.py covers Horovod.
SETTINGS = "--set train.max_steps=6 --set train.batch_size=8 --set model.params.hidden_size=8 " \
           "--set dist.engine=ddp --set log.plots=false --set log.progress=lines"

QSTAT = """#!/bin/bash
# qstat -f JOBID, as PBS Pro prints it (the attributes train.pbs reads)
cat <<EOF
Job Id: $2
    Job_Name = pgti
    Account_Name = FAKEPROJ
    queue = small
    stime = $(date -d @"$(cat "$FAKE_PBS/stime")")
    Resource_List.select = 1:system=polaris
    Resource_List.place = scatter
    Resource_List.filesystems = home:eagle
    Resource_List.walltime = $(cat "$FAKE_PBS/walltime")
EOF
"""
QSUB = """#!/bin/bash
# records its arguments (one per line) and answers with the next job id
n=$(ls "$FAKE_PBS"/qsub-*.args 2>/dev/null | wc -l)
printf '%s\\n' "$@" > "$FAKE_PBS/qsub-$n.args"
echo "$((1001 + n)).fakepbs"
"""


def stub(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def fake_pbs(tmp_path):
    fake = tmp_path / "fakepbs"
    (fake / "bin").mkdir(parents=True)
    stub(fake / "bin" / "qstat", QSTAT)
    stub(fake / "bin" / "qsub", QSUB)
    (fake / "nodefile").write_text("localhost\nlocalhost\n")
    return fake


def pbs_env(fake: Path, workdir: Path, job_id: str, walltime: str, **extra) -> dict:
    (fake / "walltime").write_text(walltime)
    (fake / "stime").write_text(str(int(time.time())))
    mpi_bin = str(Path(shutil.which("mpiexec") or sys.executable).parent)
    return clean_env(PATH=f"{fake / 'bin'}:{mpi_bin}:" + clean_env()["PATH"], FAKE_PBS=str(fake),
                     PBS_JOBID=job_id, PBS_NODEFILE=str(fake / "nodefile"), PBS_O_WORKDIR=str(workdir),
                     PBS_O_QUEUE="debug", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", **extra)


def run_link(env: dict, cwd: Path, timeout: float = 150) -> subprocess.CompletedProcess:
    # PBS starts the job's copy of the script in $HOME; train.pbs moves to $PBS_O_WORKDIR itself.
    script = env.get("PGTI_JOB_SCRIPT", str(PBS))
    return subprocess.run(["bash", script], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def qsub_vars(args: list[str]) -> dict:
    """The -v list of a recorded qsub call as a dict (values may be quoted because of commas)."""
    text = args[args.index("-v") + 1]
    return {m.group(1): m.group(2).strip("'") for m in re.finditer(r"(\w+)=('[^']*'|[^,]*)", text)}


@pytest.mark.slow
def test_pbs_chain_checkpoints_at_walltime_resubmits_and_resumes(fake_pbs, demo_data, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = pbs_env(fake_pbs, workdir, "1000.fakepbs", "00:02:00", PGTI_HOME=str(REPO), PGTI_CONFIG=str(DEMO),
                  PGTI_RUN_DIR="runs/chain", PGTI_PPN="2", PGTI_TIME_MARGIN="119",
                  PGTI_ARGS=f"--set data.path={demo_data} {SETTINGS}")
    first = run_link(env, cwd=tmp_path)
    out = first.stdout + first.stderr
    run_dir = workdir / "runs" / "chain"
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
    assert first.returncode == 0, out + log
    assert "1 node(s) x 2 rank(s)" in out and "mpiexec flavour openmpi" in out, out
    assert f"-npernode 2 -x OMP_NUM_THREADS --hostfile {fake_pbs / 'nodefile'}" in out, out
    assert re.search(r"--set train\.time_limit=1\b", out), out
    assert "stopping on walltime" in log, out + log
    assert "2 ranks on 1 node(s)" in log, log

    calls = sorted(fake_pbs.glob("qsub-*.args"))
    assert len(calls) == 1, out
    args = calls[0].read_text().splitlines()
    assert args[:2] == ["-W", "depend=afterany:1000.fakepbs"], args
    for pair in (["-q", "debug"], ["-A", "FAKEPROJ"], ["-l", "select=1:system=polaris"],
                 ["-l", "walltime=00:02:00"], ["-l", "filesystems=home:eagle"], ["-l", "place=scatter"]):
        assert any(args[i:i + 2] == pair for i in range(len(args))), (pair, args)
    assert args[-1] == str(PBS)
    forwarded = qsub_vars(args)
    assert forwarded["PGTI_CONFIG"] == str(DEMO) and forwarded["PGTI_RUN_DIR"] == str(run_dir)
    assert forwarded["PGTI_CHAIN"] == "1" and forwarded["PGTI_PPN"] == "2"
    assert forwarded["PGTI_ARGS"].startswith(f"--set data.path={demo_data}")

    # Link 2: only what qsub was given (its -v settings), a comfortable walltime.
    env2 = pbs_env(fake_pbs, workdir, "1001.fakepbs", "01:00:00", **forwarded)
    second = run_link(env2, cwd=tmp_path)
    out2 = second.stdout + second.stderr
    log = (run_dir / "train.log").read_text()
    assert second.returncode == 0, out2 + log
    assert "link 2 of the chain" in out2 and "training finished (exit 0)" in out2, out2
    assert "resuming from" in log and "parameters identical on all 2 ranks" in log, log
    assert len(list(fake_pbs.glob("qsub-*.args"))) == 1, "a finished run must not resubmit"


def test_pbs_pals_flavour_command_line(fake_pbs, tmp_path):
    """The Cray PALS launch line (as on Polaris), with a recording `mpiexec` in place of PALS."""
    record = tmp_path / "mpiexec.args"
    stub(fake_pbs / "bin" / "fake-mpiexec", f"#!/bin/bash\nprintf '%s\\n' \"$@\" > {record}\n")
    (fake_pbs / "nodefile").write_text("x3004c0s1b0n0\nx3004c0s1b1n0\nx3004c0s7b0n0\n")
    env = pbs_env(fake_pbs, tmp_path, "77.fakepbs", "01:00:00", PGTI_HOME=str(REPO), PGTI_CONFIG=str(DEMO),
                  PGTI_PPN="4", PGTI_DEPTH="8", PGTI_MPIEXEC=str(fake_pbs / "bin" / "fake-mpiexec"),
                  PGTI_MPIEXEC_FLAVOR="pals", PGTI_TIME_MARGIN="600")
    proc = run_link(env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    args = record.read_text().splitlines()
    assert args[:10] == ["-n", "12", "--ppn", "4", "--depth", "8", "--cpu-bind", "depth", "--env",
                         "OMP_NUM_THREADS=1"], args
    assert args[10] == str(REPO / "jobs" / "pbs" / "gpu_affinity.sh")
    assert args[11:14] == ["pgti", "train", "--config"]
    limit = re.search(r"train\.time_limit=(\d+)", " ".join(args))
    assert limit and 2990 <= int(limit.group(1)) <= 3000, args  # 3600 s - elapsed - 600 s margin
    assert not list(fake_pbs.glob("qsub-*.args"))


def test_gpu_affinity_maps_local_ranks(tmp_path):
    """gpu_affinity.sh: local rank -> CUDA_VISIBLE_DEVICES, from each launcher's variable."""
    script = REPO / "jobs" / "pbs" / "gpu_affinity.sh"

    def visible(**env):
        base = {k: v for k, v in os.environ.items() if not k.endswith(("LOCAL_RANK", "LOCALRANKID", "LOCALID"))
                and k not in ("CUDA_VISIBLE_DEVICES", "PALS_LOCAL_RANKID")}
        proc = subprocess.run(["bash", str(script), "bash", "-c", 'echo "${CUDA_VISIBLE_DEVICES-unset}"'],
                              capture_output=True, text=True, env={**base, **env}, check=True)
        return proc.stdout.strip()

    assert visible(PALS_LOCAL_RANKID="1", PGTI_GPUS_PER_NODE="4") == "1"
    assert visible(PALS_LOCAL_RANKID="0", PGTI_GPUS_PER_NODE="4", PGTI_GPU_MAP="3,2,1,0") == "3"
    assert visible(OMPI_COMM_WORLD_LOCAL_RANK="5", PGTI_GPUS_PER_NODE="4") == "1"
    assert visible(MPI_LOCALRANKID="2", CUDA_VISIBLE_DEVICES="4,5,6,7") == "6"
    assert visible(SLURM_LOCALID="1", PATH="/usr/bin:/bin") == "unset"  # no GPUs: unchanged


@pytest.mark.slow
def test_pbs_qdel_ends_the_chain(fake_pbs, demo_data, tmp_path):
    """qdel sends SIGTERM to the job script: two real ranks under Open MPI's mpiexec checkpoint
    and stop (the script passes it on as USR1: mpiexec itself would kill the ranks on TERM
    before they checkpoint), and no next link is submitted."""
    import signal

    workdir = tmp_path / "work"
    workdir.mkdir()
    settings = SETTINGS.replace("train.max_steps=6", "train.max_steps=100000").replace(
        "log.progress=lines", "log.progress=lines --set log.every_steps=1")
    env = pbs_env(fake_pbs, workdir, "500.fakepbs", "01:00:00", PGTI_HOME=str(REPO), PGTI_CONFIG=str(DEMO),
                  PGTI_RUN_DIR="runs/qdel", PGTI_PPN="2", PGTI_ARGS=f"--set data.path={demo_data} {settings}")
    proc = subprocess.Popen(["bash", str(PBS)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=tmp_path)
    log_path = workdir / "runs" / "qdel" / "train.log"
    out = signal_after_log(proc, log_path, r"epoch 1 step [3-9]/", lambda: proc.send_signal(signal.SIGTERM), timeout=90)
    log = log_path.read_text()
    assert proc.returncode == 75, out + log
    assert "got SIGTERM" in out and "submitting the next link" not in out, out
    assert "stopping on SIGUSR1" in log and "checkpointed; resubmit with --resume auto" in log, out + log
    assert list((workdir / "runs" / "qdel" / "checkpoints").glob("step-*.pt")), log
    assert not list(fake_pbs.glob("qsub-*.args")), out
