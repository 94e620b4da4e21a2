"""A real multi-host cluster on this one machine: every "host" a network, hostname and mount
namespace, joined by a private bridge; `mpirun` across them; optionally a two-node Slurm.

    with VirtualCluster(root, hosts=2) as cluster:          # or the `cluster` fixture
        cluster.mpirun(4, [sys.executable, "-c", "..."])     # 2 ranks on node1, 2 on node2
        cluster.run_on("node2", ["hostname"])

Each host `nodeI` has:
  - its own network namespace `pgti-<id>-nodeI` (`ip netns list`), with `lo` and `eth0` at
    10.200.0.I/24 on a bridge that lives in a namespace of its own: the addresses exist only
    inside these namespaces, nothing has a route out of them;
  - its own hostname (UTS namespace) and mount namespace, held by one `sleep` process per
    host: a private tmpfs /tmp and /dev/shm, and an /etc/hosts that names every host.
    The paths every host must see (the cluster's root, the repository, the interpreter's
    prefix, the paths given as `shared`) are bind-mounted into the private /tmp when they
    live under /tmp: a filesystem every host sees, like a site's shared home or scratch.

mpirun reaches the other hosts the way it does on a cluster, through its "ssh" agent
(`--mca plm_ssh_agent`): a script that drops ssh's options, looks the host up and runs the
command in that host's namespaces from an empty environment (as sshd would, so a variable
not forwarded with `-x` is missing there too). mpirun itself runs on node1.

Tear-down (also after a failed test): every process in each namespace is killed by its pid,
the namespaces are deleted, nothing stays mounted. When this machine cannot do any of it
(not root, no `ip netns`, no `unshare`), `VirtualCluster.unavailable()` says why in one line.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from testlib import REPO

if TYPE_CHECKING:
    from slurmlib import SlurmCluster

SUBNET = "10.200.0"
MPI_NET = f"{SUBNET}.0/24"

# The "ssh" of the cluster: `agent.sh [ssh options] HOST COMMAND...`.
AGENT = """#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-p|-l|-i|-F|-E|-b|-c|-m|-J) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host="$1"; shift
pid="$(awk -v h="$host" '$1 == h || $2 == h { print $3 }' "{root}/hosts.map")"
if [ -z "$pid" ]; then echo "agent.sh: unknown host $host" >&2; exit 255; fi
exec nsenter -t "$pid" -n -u -m env -i PATH="{path}" HOME="${HOME:-/root}" LANG=C.UTF-8 \\
  /bin/sh -c "$*"
"""

# Run by each host's holder, in its new UTS and mount namespaces.
HOST_INIT = """#!/bin/sh
set -e
name="$1"; stage="$2"; ready="$3"; hosts="$4"; shift 4
hostname "$name"
mkdir -p "$stage"
mount -t tmpfs -o mode=1777 "tmp-$name" "$stage"
for keep in "$@"; do  # paths under /tmp that every host sees
  mkdir -p "$stage${keep#/tmp}"
  mount --bind "$keep" "$stage${keep#/tmp}"
done
mount --move "$stage" /tmp
mount -t tmpfs -o mode=1777 "shm-$name" /dev/shm
mount --bind "$hosts" /etc/hosts
echo "$$" > "$ready"
exec sleep infinity
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _netns_mounted() -> bool:
    """Whether /run/netns is a mount point (`ip netns add` makes it one)."""
    return any(line.split()[4] == "/run/netns" for line in Path("/proc/self/mountinfo").read_text().splitlines())


def _unmount_netns_if_empty() -> None:
    if _netns_mounted() and not _ip("netns", "list", check=False).stdout.strip():
        subprocess.run(["umount", "/run/netns"], capture_output=True, timeout=30)


class VirtualCluster:
    """`hosts` namespaced hosts node1..nodeN; `up()` brings them up, `down()` removes all."""

    def __init__(self, root: Path, hosts: int = 2, slots: int = 2, shared: list[Path] = (),
                 resolvable: bool = True):
        """resolvable=False: the hosts' names are in no /etc/hosts (like a cluster whose node
        names are not in DNS); the hostfile and the agent use addresses."""
        self.root = Path(root).resolve()
        self.resolvable = resolvable
        self.names = [f"node{i}" for i in range(1, hosts + 1)]
        self.slots = slots
        self.tag = f"pgti-{os.getpid()}-{secrets.token_hex(3)}"  # unique: down() deletes only its own
        self.made: list[str] = []  # the namespaces this cluster created, in order
        self.shared = [Path(p).resolve() for p in shared]
        self.holders: dict[str, subprocess.Popen] = {}
        self.daemons: list[subprocess.Popen] = []

    # ------------------------------------------------------------------ availability
    @staticmethod
    def unavailable() -> str | None:
        """None when this machine can build the cluster, else the reason in one line."""
        if os.geteuid() != 0:
            return "needs root (network and mount namespaces)"
        for tool in ("ip", "unshare", "nsenter", "mpirun"):
            if shutil.which(tool) is None:
                return f"no {tool!r} on PATH" + (" (run bash env/setup.sh)" if tool == "mpirun" else "")
        probe = f"pgti-probe-{os.getpid()}-{secrets.token_hex(3)}"
        mounted = _netns_mounted()
        made = _ip("netns", "add", probe, check=False)
        if made.returncode == 0:
            _ip("netns", "del", probe, check=False)
        if not mounted:
            _unmount_netns_if_empty()
        return None if made.returncode == 0 else f"`ip netns add` failed: {made.stderr.strip()}"

    # ------------------------------------------------------------------ lifecycle
    def ns(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def address(self, name: str) -> str:
        return f"{SUBNET}.{self.names.index(name) + 1}"

    def keep_paths(self) -> list[str]:
        """The paths under /tmp every host must see, outermost only."""
        interpreter = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]  # a venv, and its base
        wanted = sorted({str(p) for p in [self.root, REPO, *interpreter, *self.shared]
                         if str(p).startswith("/tmp/")})
        outer: list[str] = []
        for path in wanted:
            if not any(path == o or path.startswith(o + "/") for o in outer):
                outer.append(path)
        return outer

    def up(self, timeout: float = 20) -> "VirtualCluster":
        try:
            self._up(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _up(self, timeout: float) -> None:
        self.netns_was_mounted = _netns_mounted()
        r = self.root
        r.mkdir(parents=True, exist_ok=True)
        r.chmod(0o755)
        (r / "hosts").write_text("127.0.0.1 localhost\n" + "".join(
            f"{self.address(n)} {n}\n" for n in self.names if self.resolvable))
        (r / "hostfile").write_text("".join(f"{n if self.resolvable else self.address(n)} slots={self.slots}\n"
                                            for n in self.names))
        (r / "host-init.sh").write_text(HOST_INIT)
        path = ":".join(dict.fromkeys([str(Path(sys.executable).parent), *os.environ.get("PATH", "").split(":"),
                                       "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"]))
        agent = r / "agent.sh"
        agent.write_text(AGENT.replace("{root}", str(r)).replace("{path}", path))
        agent.chmod(0o755)

        bridge = self.ns("br")
        self.made.append(bridge)
        _ip("netns", "add", bridge)
        _ip("-n", bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", bridge, "link", "set", "br0", "up")
        for i, name in enumerate(self.names, start=1):
            ns = self.ns(name)
            self.made.append(ns)
            _ip("netns", "add", ns)
            _ip("-n", bridge, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", bridge, "link", "set", f"v{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.address(name)}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            ready = r / f"{name}.ready"
            ready.unlink(missing_ok=True)
            log = open(r / f"{name}.holder.log", "wb")
            self.holders[name] = subprocess.Popen(
                # nsenter, not `ip netns exec`: that one mounts a new /sys without the cgroup
                # hierarchies, and slurmd refuses to start without them.
                ["nsenter", f"--net=/run/netns/{ns}", "unshare", "--uts", "--mount", "--propagation", "private",
                 "/bin/sh", str(r / "host-init.sh"), name, str(r / f"{name}.stage"), str(ready), str(r / "hosts"),
                 *self.keep_paths()], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        end = time.monotonic() + timeout
        pids = {}
        for name in self.names:
            ready = r / f"{name}.ready"
            while not (ready.exists() and ready.read_text().strip()):
                if self.holders[name].poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"host {name} did not come up: "
                                       f"{(r / f'{name}.holder.log').read_text(errors='replace').strip()}")
                time.sleep(0.05)
            pids[name] = int(ready.read_text())  # the sleep that holds the host's namespaces
        (r / "hosts.map").write_text("".join(f"{n} {self.address(n)} {pids[n]}\n" for n in self.names))
        self.pids = pids

    def down(self) -> None:
        """Kill every process of every host (by pid), delete the namespaces. Idempotent."""
        for p in self.daemons:
            if p.poll() is None:
                p.terminate()
        for ns in self.made:
            for _ in range(3):
                listed = _ip("netns", "pids", ns, check=False)
                pids = [int(x) for x in listed.stdout.split()] if listed.returncode == 0 else []
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                time.sleep(0.1)
        for p in [*self.holders.values(), *self.daemons]:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in self.made:
            _ip("netns", "del", ns, check=False)
        self.made.clear()
        self.holders.clear()
        self.daemons.clear()
        if not getattr(self, "netns_was_mounted", True):
            _unmount_netns_if_empty()  # `ip netns add` made /run/netns a mount point: not ours to keep

    def __enter__(self) -> "VirtualCluster":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def slurm(self, root: Path, cpus: int | None = None) -> "SlurmCluster":
        """A Slurm whose nodes are these hosts (not started): slurmctld and the clients on
        node1, one slurmd per host, munged here. Stopped by its `stop()`."""
        from slurmlib import SlurmCluster

        return SlurmCluster(root, cpus=cpus or self.slots, nodes=[(n, self.address(n)) for n in self.names],
                            enter=self.enter)

    # ------------------------------------------------------------------ running things
    def enter(self, name: str) -> list[str]:
        """The argv prefix that runs a command on host `name` (its namespaces, this environment)."""
        return ["nsenter", "-t", str(self.pids[name]), "-n", "-u", "-m"]

    def run_on(self, name: str, argv: list, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.enter(name) + [str(a) for a in argv], capture_output=True, text=True,
                              timeout=timeout, **kw)

    def spawn_on(self, name: str, argv: list, log: Path, env: dict | None = None) -> subprocess.Popen:
        """A daemon on host `name`, killed at `down()`."""
        out = open(log, "wb")
        proc = subprocess.Popen(self.enter(name) + [str(a) for a in argv], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        out.close()
        self.daemons.append(proc)
        return proc

    def mpirun_args(self, forward=(), env: dict | None = None) -> list[str]:
        """What `mpirun` needs to start ranks across the hosts: the hostfile, the agent, the
        bridge's network, no binding and yielding (the hosts share this machine's cores), `-x` for the
        variables of `env` (default os.environ) that the ranks need and those named in `forward`.
        Also what $PGTI_MPIRUN_ARGS takes (the job scripts, the benchmarks' own launches)."""
        env = os.environ if env is None else env
        # --bind-to none and yielding when idle: the hosts share this machine's cores, so 4 ranks
        # are oversubscribed though no host is, and Open MPI would bind and busy-poll as on real
        # nodes (bound, each host's ranks land on the same cores; polling, a waiting rank starves
        # a working one: W=4 as 2 x 2 measured 2-3x slower than with yielding).
        args = ["--hostfile", str(self.root / "hostfile"), "--bind-to", "none", "--mca", "mpi_yield_when_idle", "1",
                "--mca", "plm_ssh_agent", str(self.root / "agent.sh"),
                "--mca", "btl_tcp_if_include", MPI_NET, "--mca", "oob_tcp_if_include", MPI_NET]
        for var in ["OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "OMP_NUM_THREADS",
                    "PYTHONUNBUFFERED", "PYTHONPATH", "VIRTUAL_ENV", *forward]:
            if var in env:
                args += ["-x", var]
        return args

    def mpirun_command(self, np_: int, per_host: int | None = None, forward=(), extra=(),
                       env: dict | None = None) -> list[str]:
        """`mpirun -np N` on node1 across the hosts, `per_host` ranks on each (default: slots),
        then `extra`; see `mpirun_args`."""
        per_host = per_host or self.slots
        return [*self.enter(self.names[0]), shutil.which("mpirun"), "-np", str(np_),
                "--map-by", f"ppr:{per_host}:node", *(["--oversubscribe"] if per_host > self.slots else []),
                *self.mpirun_args(forward, env), "--wdir", os.getcwd(), *extra]

    def mpirun(self, np_: int, argv: list, timeout: float = 120, per_host: int | None = None, forward=(),
               extra=(), env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        """Launch `argv` with `np_` ranks across the hosts; every launch runs under a timeout."""
        env = dict(os.environ if env is None else env)
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("PYTHONUNBUFFERED", "1")
        cmd = self.mpirun_command(np_, per_host, forward, extra, env)
        return subprocess.run(["timeout", "-k", "5", str(int(timeout)), *cmd, *map(str, argv)], capture_output=True,
                              text=True, timeout=timeout + 15, env=env, **kw)
