"""The harness itself (tests/clusterlib.py, tests/slurmlib.py): tearing down leaves no
namespace, mount or process behind, also when something was left running on a host."""
from __future__ import annotations

import subprocess
from pathlib import Path

from clusterlib import VirtualCluster


def alive(pid: int) -> bool:
    """Whether `pid` is a process that still runs (a zombie waiting for its parent does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_teardown_leaves_nothing_behind(cluster, tmp_path):  # `cluster`: skipped where none can be made
    tmp_path.chmod(0o755)  # munged wants its socket's directory searchable by everyone
    hosts = VirtualCluster(tmp_path / "hosts", hosts=2, resolvable=False, shared=[tmp_path])
    hosts.up()
    names = [hosts.ns(name) for name in [*hosts.names, "br"]]
    slurm = hosts.slurm(tmp_path / "slurm")
    try:
        slurm.start()
        daemons = [p.pid for p in slurm.procs.values()]
        # A process that outlives what started it, as a failed test leaves one behind.
        stray = int(hosts.run_on("node2", ["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"]).stdout)
        holders = list(hosts.pids.values())
        assert all(alive(pid) for pid in [*daemons, stray, *holders])
    finally:
        slurm.stop()
        hosts.down()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [name for name in names if name in listed], listed
    assert all(ns in listed for ns in cluster.made), listed  # the session's hosts are not its to remove
    left = [pid for pid in [*daemons, stray, *holders] if alive(pid)]
    assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
    mounts = Path("/proc/self/mountinfo").read_text()
    assert not [name for name in names if name in mounts]
