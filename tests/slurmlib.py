"""A real Slurm private to one test session: its own munged, slurmctld and one slurmd per node.

`SlurmCluster(root)` writes a slurm.conf into `root` (this host as one node with 2 CPUs,
random free ports, no cgroups), starts its own `munged`, `slurmctld -D` and `slurmd -D` as
child processes and stops exactly those. Jobs outlive a killed slurmd, so `stop()` cancels
every job and waits for them to end before it stops the daemons. With `nodes` and `enter`
(`VirtualCluster.slurm()` in tests/clusterlib.py) every node is a host of its own.
"""
from __future__ import annotations

import getpass
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable

from testlib import REPO, wait_until

INSTALL = REPO / "tests" / "hpc" / "install.sh"


def install_tools() -> str | None:
    """Install the suite's system packages when missing; None when ready, else the reason."""
    if shutil.which("dpkg-query") is None:
        return "not a Debian-like system (no dpkg-query): install Slurm, munge, Lmod and shellcheck by hand"
    proc = subprocess.run(["bash", str(INSTALL)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        return (proc.stderr.strip() or proc.stdout.strip() or f"{INSTALL} failed").splitlines()[-1]
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """A real Slurm (slurmctld + slurmd per node + munged) private to one test session.

    nodes  [(name, address)]; default: this host as one node at 127.0.0.1.
    enter  enter(name) -> the argv prefix that runs a command on node `name` (nsenter into
           its namespaces, see tests/clusterlib.py); default: run here. slurmctld and the
           clients (sbatch, scontrol, ...) run on the first node, munged here (its socket
           is a path every node sees).
    """

    def __init__(self, root: Path, cpus: int = 2, nodes: list[tuple[str, str]] | None = None,
                 enter: Callable[[str], list[str]] = lambda name: []):
        self.root = Path(root)
        self.cpus = cpus
        self.nodes = nodes or [(socket.gethostname().split(".")[0], "127.0.0.1")]
        self.host = self.nodes[0][0]
        self.enter = enter
        self.user = getpass.getuser()
        self.conf = self.root / "slurm.conf"
        self.procs: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------------ lifecycle
    def write_config(self) -> None:
        r = self.root
        for d in ("state", "log", *(f"spool/slurmd-{name}" for name, _ in self.nodes)):
            (r / d).mkdir(parents=True, exist_ok=True)
        r.chmod(0o755)  # munged wants its socket's directory searchable by everyone
        key = r / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        nodes = "\n".join(f"NodeName={name} NodeAddr={addr} CPUs={self.cpus} State=UNKNOWN" for name, addr in self.nodes)
        self.conf.write_text(f"""\
ClusterName=pgtitest
SlurmctldHost={self.host}({self.nodes[0][1]})
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser={self.user}
SlurmdUser={self.user}
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again 5 s after it ended (the default waits 120 s)
AuthInfo=socket={r}/munge.sock,cred_expire=5
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/slurmd-%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
JobRequeue=1
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MinJobAge=600
KillWait=5
InactiveLimit=0
{nodes}
PartitionName=debug Nodes={",".join(name for name, _ in self.nodes)} Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, name: str, argv: list[str], on: str | None = None) -> None:
        out = open(self.root / "log" / f"{name}.out", "wb")
        prefix = self.enter(on) if on else []
        self.procs[name] = subprocess.Popen([*prefix, *argv], stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                                            start_new_session=True)
        out.close()

    def start(self, timeout: float = 30) -> None:
        """Start the daemons; raises RuntimeError (with the logs' tails), having stopped what it
        started, if a node never comes up."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self.write_config()
        r = self.root
        self._spawn("munged", ["munged", "-F", "--force", f"--key-file={r}/munge.key", f"--socket={r}/munge.sock",
                               f"--pid-file={r}/munged.pid", f"--log-file={r}/log/munged.log",
                               f"--seed-file={r}/munged.seed"])
        self._wait(lambda: (r / "munge.sock").exists(), 10, "munged did not create its socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-f", str(self.conf)], on=self.host)
        for name, _ in self.nodes:
            self._spawn(f"slurmd-{name}", ["slurmd", "-D", "-N", name, "-f", str(self.conf)], on=name)
        self._wait(lambda: self.node_states() and all(s in ("idle", "mixed", "allocated") for s in self.node_states()),
                   timeout, "the nodes never became idle")

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}: {self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(f"{what} within {timeout:.0f} s: {self.logs()}")

    def logs(self, lines: int = 8) -> str:
        text = []
        for f in sorted((self.root / "log").glob("*")):
            tail = f.read_text(errors="replace").splitlines()[-lines:]
            text.append(f"== {f.name}\n" + "\n".join(tail))
        return "\n".join(text)

    def stop(self, timeout: float = 60) -> None:
        """Cancel every job, wait for them to end, then stop our daemons (by their handles)."""
        if self.procs.get("slurmctld") and self.procs["slurmctld"].poll() is None:
            end = time.monotonic() + timeout
            # Again and again: a job script may requeue itself while it is being cancelled.
            while time.monotonic() < end and self.run(["squeue", "-h", "-o", "%i"], check=False).stdout.strip():
                self.run(["scancel", "--user", self.user], check=False)
                time.sleep(0.5)
        for name in [*(f"slurmd-{n}" for n, _ in self.nodes), "slurmctld", "munged"]:
            p = self.procs.get(name)
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)

    # ------------------------------------------------------------------ clients
    def env(self, **extra) -> dict:
        env = dict(os.environ, SLURM_CONF=str(self.conf))
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
        """A client command (sbatch, scontrol, ...), on the controller's node."""
        kw.setdefault("env", self.env())
        proc = subprocess.run([*self.enter(self.host), *argv], capture_output=True, text=True, timeout=60, **kw)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc

    def node_states(self) -> list[str]:
        """The state of every node (idle, alloc, down, ...); [] when the controller does not answer."""
        proc = self.run(["sinfo", "-h", "-N", "-o", "%t"], check=False)
        return [s.rstrip("*~#$@+-").lower() for s in proc.stdout.split()] if proc.returncode == 0 else []

    def sbatch(self, args: list[str], cwd: Path, env: dict | None = None) -> str:
        # --chdir: the submission directory, also where nsenter would have left us at /
        proc = self.run(["sbatch", "--parsable", f"--chdir={cwd}", *map(str, args)], cwd=cwd, env=env or self.env())
        return proc.stdout.strip().split(";")[0]

    def job(self, job_id: str) -> dict:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, ...)."""
        proc = self.run(["scontrol", "show", "job", "-o", job_id], check=False)
        return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))

    def wait_job(self, job_id: str, timeout: float, states=("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                             "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL")) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            info = self.job(job_id)
            if info.get("JobState") in states:
                return info
            time.sleep(0.5)
        raise TimeoutError(f"job {job_id} still {self.job(job_id).get('JobState')} after {timeout:.0f} s")

    def describe(self, job_id: str, out: Path, run_dir: Path) -> str:
        """A training job's state, its output's tail and its run's train.log tail (for failures)."""
        text = out.read_text() if out.exists() else "(no job output)"
        log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else "(no train.log)"
        return f"job {job_id}: {self.job(job_id)}\n--- job output\n{text[-3000:]}\n--- train.log\n{log[-2000:]}"

    def usr1_after_first_checkpoint(self, job_id: str, out: Path, run_dir: Path) -> None:
        """Once the job's run has a checkpoint, signal its batch shell as Slurm does before the
        time limit (`--signal=B:USR1@...`); fails if the job ends first."""
        def still_running():
            assert self.job(job_id).get("JobState") in ("PENDING", "RUNNING", "CONFIGURING"), \
                self.describe(job_id, out, run_dir)

        wait_until((run_dir / "checkpoints" / "latest").exists,
                   lambda: "a checkpoint\n" + self.describe(job_id, out, run_dir), timeout=120, poll=0.2,
                   check=still_running)
        self.run(["scancel", "--signal=USR1", "--batch", job_id])

    def srun_pmix_works(self) -> bool:
        """Whether `srun --mpi=pmix` can start tasks here (needs libpmix.so for Slurm's plugin)."""
        proc = self.run(["srun", "-n1", "--mpi=pmix", "true"], check=False)
        return proc.returncode == 0
