"""One job per run directory (`pgti.train.lock`), with real holder processes: a second
holder is refused naming the first, a SIGKILLed holder's lock is taken over, a record from
another host is honoured until its heartbeat is stale, a PID reused by another process is no
holder, and a later start of the same batch job waits for its predecessor. Both lock modes:
flock, and the O_EXCL files used where a filesystem has no flock."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from pgti.errors import UserError
from pgti.train.lock import LOCK_NAME, RunLock, read_record
from testlib import start_lock_holder

MODES = ["flock", "excl"]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    monkeypatch.setenv("PGTI_RUN_LOCK", request.param)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return request.param


def test_a_second_holder_is_refused_and_a_killed_one_taken_over(mode, tmp_path):
    holder = start_lock_holder(tmp_path, PGTI_RUN_LOCK=mode, SLURM_JOB_ID="777")
    try:
        record, _ = read_record(tmp_path / LOCK_NAME)
        assert record["pid"] == holder.pid and record["mode"] == mode and record["job_id"] == "777"
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
    assert not (tmp_path / LOCK_NAME).exists()  # a clean release leaves nothing behind
    assert RunLock(tmp_path, wait=0).acquire().note == ""  # a free directory: no takeover to report


def _foreign_record(path, **fields):
    record = {"host": "node-elsewhere", "pid": 4242, "pid_start": 1, "boot_id": "", "job_id": "99",
              "started_utc": "2026-01-01 00:00:00 UTC", "heartbeat_s": 30.0, "stale_after_s": 150.0, **fields}
    path.write_text(json.dumps(record))
    return record


def test_another_hosts_holder_counts_until_its_heartbeat_is_stale(mode, tmp_path):
    """flock cannot see a holder on another node where it is node-local (Lustre localflock):
    the record's fresh heartbeat refuses; an old one (a lost node) is taken over."""
    _foreign_record(tmp_path / LOCK_NAME)
    with pytest.raises(UserError, match=r"host node-elsewhere \(PID 4242, job 99, .*heartbeat 0 s ago\) \(a holder "
                                        r"killed there is taken over 150 s after its last heartbeat\)"):
        RunLock(tmp_path, wait=0).acquire()
    old = time.time() - 151
    os.utime(tmp_path / LOCK_NAME, (old, old))
    lock = RunLock(tmp_path, wait=0).acquire()
    assert "took over the lock left by host node-elsewhere (PID 4242" in lock.note
    lock.release()


def test_a_reused_pid_or_a_reboot_is_no_holder(mode, tmp_path):
    """The record names this host and a live PID, but another process (start time) or an
    earlier boot: the holder is gone."""
    here = socket.gethostname()
    _foreign_record(tmp_path / LOCK_NAME, host=here, pid=os.getppid(), pid_start=-1)
    lock = RunLock(tmp_path, wait=0).acquire()
    assert f"PID {os.getppid()}" in lock.note
    lock.release()
    _foreign_record(tmp_path / LOCK_NAME, host=here, pid=os.getpid(), pid_start=None, boot_id="an-earlier-boot")
    lock = RunLock(tmp_path, wait=0).acquire()
    assert "took over" in lock.note
    lock.release()


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
