"""One job per run directory (`pgti.train.lock`), with real holder processes: a second holder
is refused naming the first, a SIGKILLed holder's lock is taken over, a holder on this host is
judged by its PID (not by a stale heartbeat), one on another host by its flock and heartbeat,
a reused PID or a reboot is no holder, racing starts end with exactly one holder, and a later
start of the same batch job waits for its predecessor. With flock, and without
(`PGTI_RUN_LOCK=noflock`)."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pgti.errors import UserError
from pgti.train.lock import LOCK_NAME, RunLock, _boot_id, _start_ticks, read_record
from testlib import start_lock_holder


@pytest.fixture(params=["flock", "noflock"])
def mode(request, monkeypatch):
    monkeypatch.setenv("PGTI_RUN_LOCK", request.param)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return request.param


def test_a_second_holder_is_refused_and_a_killed_one_taken_over(mode, tmp_path):
    holder = start_lock_holder(tmp_path, PGTI_RUN_LOCK=mode, SLURM_JOB_ID="777")
    try:
        record, _ = read_record(tmp_path / LOCK_NAME)
        assert record["pid"] == holder.pid and record["job_id"] == "777" and record["pid_start"] == _start_ticks(holder.pid)
        before = (tmp_path / LOCK_NAME).read_bytes()
        with pytest.raises(UserError) as refused:
            RunLock(tmp_path, wait=0).acquire()
        message = str(refused.value)
        assert f"in use by another pgti train on host {socket.gethostname()} (PID {holder.pid}, job 777, since " in message
        assert (tmp_path / LOCK_NAME).read_bytes() == before  # the holder's record is untouched
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # a killed holder cannot clean up: its record stays
    lock = RunLock(tmp_path, wait=0).acquire()
    assert f"took over the lock left by host {socket.gethostname()} (PID {holder.pid}" in lock.note
    assert read_record(tmp_path / LOCK_NAME)[0]["pid"] == os.getpid()
    lock.release()
    assert sorted(os.listdir(tmp_path)) == []  # a clean release leaves nothing behind
    assert RunLock(tmp_path, wait=0).acquire().note == ""  # a free directory: no takeover to report


def test_a_live_holder_on_this_host_is_never_taken_over_for_a_stale_heartbeat(mode, tmp_path):
    """Suspended (SIGSTOP, scontrol suspend) past its heartbeats, with another lock mode than ours."""
    holder = start_lock_holder(tmp_path, PGTI_RUN_LOCK="noflock" if mode == "flock" else "flock")
    try:
        holder.send_signal(signal.SIGSTOP)
        old = time.time() - 3600
        os.utime(tmp_path / LOCK_NAME, (old, old))
        with pytest.raises(UserError, match=f"PID {holder.pid}"):
            RunLock(tmp_path, wait=0).acquire()
    finally:
        holder.kill()
        holder.wait()


def _record(path, **fields):
    record = {"host": "node-elsewhere", "pid": 4242, "pid_start": 1, "boot_id": "", "job_id": "99",
              "started_utc": "2026-01-01 00:00:00 UTC", "heartbeat_s": 30.0, "stale_after_s": 150.0, **fields}
    path.write_text(json.dumps(record))
    return record


def test_another_hosts_holder_counts_while_its_heartbeat_is_fresh_or_it_holds_its_flock(mode, tmp_path):
    lock_file = tmp_path / LOCK_NAME
    _record(lock_file)
    with pytest.raises(UserError, match=r"host node-elsewhere \(PID 4242, job 99, .*heartbeat 0 s ago\) \(taken over "
                                        r"150 s after its last heartbeat if that host is down\)"):
        RunLock(tmp_path, wait=0).acquire()
    old = time.time() - 151
    os.utime(lock_file, (old, old))
    if mode == "flock":  # its flock, seen across nodes on a coherent filesystem, outranks the heartbeat
        fd = os.open(lock_file, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(UserError, match="it still holds its flock: if that host is down, remove the lock file"):
            RunLock(tmp_path, wait=0).acquire()
        os.close(fd)
    lock = RunLock(tmp_path, wait=0).acquire()
    assert "took over the lock left by host node-elsewhere (PID 4242" in lock.note
    lock.release()


def test_a_reused_pid_or_a_reboot_is_no_holder(mode, tmp_path):
    """The record names this host and a live process, but not the one that took the lock (its
    start time differs), or the host booted since (same PID and start time, another boot)."""
    here, parent = socket.gethostname(), os.getppid()
    _record(tmp_path / LOCK_NAME, host=here, pid=parent, pid_start=-1, boot_id=_boot_id())
    lock = RunLock(tmp_path, wait=0).acquire()
    assert f"PID {parent}" in lock.note
    lock.release()
    _record(tmp_path / LOCK_NAME, host=here, pid=parent, pid_start=_start_ticks(parent), boot_id="an-earlier-boot")
    lock = RunLock(tmp_path, wait=0).acquire()
    assert f"PID {parent}" in lock.note
    lock.release()
    _record(tmp_path / LOCK_NAME, host=here, pid=parent, pid_start=_start_ticks(parent), boot_id=_boot_id())
    with pytest.raises(UserError):  # the same record with this boot: alive
        RunLock(tmp_path, wait=0).acquire()


RACER = """
import sys, time
from pgti.errors import UserError
from pgti.train.lock import RunLock
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
try:
    lock = RunLock(sys.argv[1], wait=0).acquire()
except UserError:
    print("refused", flush=True)
else:
    print("acquired", flush=True)
    time.sleep(1)
"""


def test_processes_starting_at_once_end_with_exactly_one_holder(tmp_path):
    at = time.time() + 1.0
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(at)], stdout=subprocess.PIPE,
                               text=True) for _ in range(4)]
    results = sorted(p.communicate(timeout=60)[0].strip() for p in racers)
    assert results == ["acquired"] + ["refused"] * 3, results


def test_contenders_taking_over_a_dead_holders_lock_end_with_exactly_one_holder(tmp_path):
    """Eight contenders at once, twenty times, each judging the dead holder's file and taking
    it over: only that very file may be removed (without the identity check about 3 rounds in
    4 ended with two holders). Threads of one process: the tightest interleaving there is."""
    import threading

    for round_ in range(20):
        run_dir = tmp_path / str(round_)
        run_dir.mkdir()
        _record(run_dir / LOCK_NAME, host=socket.gethostname(), pid=os.getppid(), pid_start=-1, boot_id=_boot_id())
        barrier, holders = threading.Barrier(8), []

        def contend(barrier=barrier, holders=holders, run_dir=run_dir):
            barrier.wait()
            with contextlib.suppress(UserError):
                holders.append(RunLock(run_dir, wait=0).acquire())

        threads = [threading.Thread(target=contend) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(holders) == 1, f"round {round_}: {len(holders)} holders"
        holders[0].release()


def test_the_heartbeat_refreshes_the_lock_file(tmp_path):
    holder = start_lock_holder(tmp_path, PGTI_LOCK_HEARTBEAT="0.2")
    try:
        first = os.stat(tmp_path / LOCK_NAME).st_mtime
        time.sleep(1.0)
        assert os.stat(tmp_path / LOCK_NAME).st_mtime > first
        assert read_record(tmp_path / LOCK_NAME)[0]["stale_after_s"] == pytest.approx(1.0)
    finally:
        holder.kill()
        holder.wait()


WAITER = """
import sys, time
from pgti.train.lock import RunLock
began = time.monotonic()
lock = RunLock(sys.argv[1], wait=float(sys.argv[2])).acquire()
print(f"acquired after {time.monotonic() - began:.1f} s; {lock.note}", flush=True)
"""


def test_a_requeued_start_of_the_same_job_waits_for_its_predecessor(mode, tmp_path):
    """Same job id (a Slurm requeue, a PBS rerun): wait for the old start to go; another job
    id is refused at once."""
    holder = start_lock_holder(tmp_path, PGTI_RUN_LOCK=mode, SLURM_JOB_ID="5150")
    env = {**os.environ, "PGTI_RUN_LOCK": mode}
    try:
        other = subprocess.run([sys.executable, "-c", WAITER, str(tmp_path), "60"], capture_output=True, text=True,
                               env={**env, "SLURM_JOB_ID": "5151"}, timeout=60)
        assert other.returncode == 1 and "in use by another pgti train" in other.stderr  # (UserError, uncaught here)
        waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(tmp_path), "60"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env={**env, "SLURM_JOB_ID": "5150"})
        time.sleep(2.0)
        assert waiter.poll() is None  # still waiting
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err
    assert "an earlier start of this job" in err and "waiting up to 60 s" in err
    assert float(out.split()[2]) >= 2.0 and f"(PID {holder.pid}, job 5150" in out
