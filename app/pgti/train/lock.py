"""One job per run directory: rank 0 holds `R/.lock` while a `pgti train` runs.

The lock is an exclusive `flock` on `R/.lock` (taken without blocking) plus a record in that
file: host, PID, process start time, boot id, job id, command and start time. The holder
refreshes the file's mtime every `heartbeat` seconds from a daemon thread.

- A second job is refused at once (UserError: one line naming the holder, exit 2); nothing in
  R is touched. A later start of the *same* batch job (a Slurm requeue, a PBS rerun: the same
  job id) instead waits up to `wait` seconds for its previous start to let go, saying so.
- A lock left by a dead holder is taken over, with a warning: on the holder's own host when
  its PID is gone (or is another process, or the host rebooted); from any host when the
  heartbeat is older than `stale_after` (5 heartbeats), e.g. a node lost with its processes.
- flock is released by the kernel when its holder dies (SIGKILL included). Where a
  filesystem has no flock (ENOLCK / ENOSYS / EOPNOTSUPP: Lustre mounted `noflock`, NFS
  `nolock`), or `PGTI_RUN_LOCK=excl`, the lock is the O_EXCL creation of the same file with
  the same record, and the same takeover rules. Where flock is only node-local (Lustre
  `localflock`, NFS `local_lock=flock`), the record still refuses a holder on another host
  whose heartbeat is fresh.

No torch, no MPI: `pgti status` reads the record with `read_record` and `holder_alive`.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path

from pgti.errors import UserError

log = logging.getLogger("pgti.train")
LOCK_NAME = ".lock"
HEARTBEAT_ENV, MODE_ENV = "PGTI_LOCK_HEARTBEAT", "PGTI_RUN_LOCK"
DEFAULT_HEARTBEAT_S = 30.0
_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
JOB_ID_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "FLUX_JOB_ID", "COBALT_JOBID")


def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _start_ticks(pid: int) -> int | None:
    """The process's start time (clock ticks after boot, /proc/PID/stat field 22): tells a
    PID reused by another process from the holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def job_id() -> str:
    return next((os.environ[v] for v in JOB_ID_VARS if os.environ.get(v)), "")


def heartbeat_seconds() -> float:
    try:
        return max(0.05, float(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S)))
    except ValueError:
        raise UserError(f"{HEARTBEAT_ENV}={os.environ[HEARTBEAT_ENV]!r}: not a number of seconds; "
                        f"unset it (default {DEFAULT_HEARTBEAT_S:g})") from None


def own_record(heartbeat: float, mode: str) -> dict:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _start_ticks(os.getpid()),
            "boot_id": _boot_id(), "job_id": job_id(), "started": now,
            "started_utc": datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "heartbeat_s": heartbeat, "stale_after_s": 5 * heartbeat, "mode": mode, "command": " ".join(sys.argv)}


def read_record(path: Path) -> tuple[dict | None, float | None]:
    """(the record or None if empty/unreadable, seconds since the last heartbeat) of a lock
    file; (None, None) when there is none."""
    try:
        with open(path, "rb") as fh:
            age = time.time() - os.fstat(fh.fileno()).st_mtime
            text = fh.read(65536)
    except FileNotFoundError:
        return None, None
    try:
        record = json.loads(text)
    except ValueError:
        return None, age
    return (record if isinstance(record, dict) else None), age


def holder_alive(record: dict, age: float) -> bool | None:
    """True/False when it can be told (the holder is on this host, or its heartbeat is stale);
    None when the holder is on another host with a fresh heartbeat (alive as far as anyone
    here can tell)."""
    if age > float(record.get("stale_after_s", 5 * DEFAULT_HEARTBEAT_S)):
        return False
    if record.get("host") != socket.gethostname():
        return None
    if record.get("boot_id") and record["boot_id"] != _boot_id():
        return False
    pid = int(record.get("pid", 0))
    return pid > 0 and _start_ticks(pid) is not None and _start_ticks(pid) == record.get("pid_start")


def describe(record: dict | None, age: float | None) -> str:
    if record is None:
        return "an unknown holder (the lock file has no record yet)"
    job = f", job {record['job_id']}" if record.get("job_id") else ""
    beat = f", heartbeat {age:.0f} s ago" if age is not None else ""
    return f"host {record.get('host')} (PID {record.get('pid')}{job}, since {record.get('started_utc')}{beat})"


class RunLock:
    """The lock on one run directory, held by this process (`acquire`, then `release`)."""

    def __init__(self, run_dir: str | os.PathLike, wait: float = 300.0):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.wait = wait
        self.heartbeat = heartbeat_seconds()
        self.fd: int | None = None
        self.note = ""  # a takeover of a dead holder's lock, for the run's log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> "RunLock":
        mode = os.environ.get(MODE_ENV, "flock")
        if mode not in ("flock", "excl"):
            raise UserError(f"{MODE_ENV}={mode!r}: choose flock (default) or excl (O_EXCL lock files, for "
                            "filesystems without a cluster-wide flock)")
        deadline, said = time.monotonic() + self.wait, False
        while True:
            taken, record, age = (self._try_flock() if mode == "flock" else (None, None, None))
            if taken is None:  # no flock on this filesystem (or excl asked for)
                mode = "excl"
                taken, record, age = self._try_excl()
            if taken:
                self._start(mode)
                return self
            if not (record and record.get("job_id") and record["job_id"] == job_id()
                    and time.monotonic() < deadline):
                elsewhere = record and record.get("host") != socket.gethostname()
                stale = f" (a holder killed there is taken over {record.get('stale_after_s', 0):.0f} s after its last " \
                        "heartbeat)" if elsewhere else ""
                raise UserError(f"--run-dir {self.run_dir}: in use by another pgti train on {describe(record, age)}"
                                f"{stale}; wait for it to end (pgti status {self.run_dir} shows it), or give another "
                                "--run-dir")
            if not said:
                log.warning("--run-dir %s: an earlier start of this job (%s) still holds it: waiting up to %.0f s for "
                            "it to exit", self.run_dir, describe(record, age), self.wait)
                said = True
            time.sleep(min(1.0, self.heartbeat))

    def _try_flock(self):
        """(True, ...) when taken; (False, record, age) when held; (None, ...) without flock."""
        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in _NO_FLOCK:
                    return None, None, None
                if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise
                return (False, *self._read_settled())
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False  # the holder removed it on release between our open and flock
            if not same:
                os.close(fd)
                continue
            record, age = read_record(self.path)
            if record and age is not None and record.get("pid") != os.getpid() and holder_alive(record, age) is None:
                os.close(fd)  # flock is node-local here: the record names a live holder elsewhere
                return False, record, age
            self.fd = fd
            self._take_over_note(record, age)
            return True, None, None
        raise UserError(f"{self.path}: the lock file keeps being replaced; is another job starting there?")

    def _try_excl(self):
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            except FileExistsError:
                record, age = self._read_settled()
                if record is None and age is None:
                    continue  # released meanwhile
                if (holder_alive(record, age) is not False) if record else (age is not None and age < 10):
                    return False, record, age
                self._remove_stale(record, age)
                continue
            self.fd = fd
            return True, None, None
        raise UserError(f"{self.path}: the lock file keeps being replaced; is another job starting there?")

    def _read_settled(self):
        """The holder's record; a file still being written (empty) is read again shortly."""
        for _ in range(10):
            record, age = read_record(self.path)
            if record is not None or age is None or age > 2:
                return record, age
            time.sleep(0.1)
        return record, age

    def _remove_stale(self, record, age) -> None:
        """Move a dead holder's lock file aside; only if it is still the one that was judged."""
        aside = self.path.with_name(f"{LOCK_NAME}.stale-{socket.gethostname()}-{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if read_record(aside)[0] != record:  # another process replaced it in between: give it back
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        else:
            self._take_over_note(record, age)
        aside.unlink(missing_ok=True)

    def _take_over_note(self, record, age) -> None:
        if record and record.get("pid") is not None:
            self.note = f"--run-dir {self.run_dir}: took over the lock left by {describe(record, age)}: that holder is gone"

    def _start(self, mode: str) -> None:
        data = json.dumps(own_record(self.heartbeat, mode)).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)
        self._thread = threading.Thread(target=self._beat, name="pgti-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with contextlib.suppress(OSError):
                os.utime(self.fd)

    def release(self) -> None:
        """Remove the lock file (while still holding it), then let go."""
        if self.fd is None:
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


_HELD: RunLock | None = None  # the lock this process holds (rank 0 of a training job)


def hold(run_dir: str | os.PathLike, wait: float = 300.0) -> str:
    """Take the run directory's lock for the rest of this process (released at exit; a
    killed process's flock is released by the kernel). Creates the directory itself only.
    Returns a note to log when a dead holder's lock was taken over, else ""."""
    global _HELD
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"--run-dir {path}: exists and is not a directory; choose another --run-dir") from None
    except OSError as exc:
        raise UserError(f"--run-dir {path}: cannot create it ({exc.strerror}); choose a writable --run-dir") from None
    try:
        _HELD = RunLock(path, wait).acquire()
    except PermissionError:
        raise UserError(f"--run-dir {path}: cannot write its lock file {path / LOCK_NAME}; choose a writable "
                        "--run-dir") from None
    import atexit

    atexit.register(release_held)
    return _HELD.note


def release_held() -> None:
    global _HELD
    if _HELD is not None:
        _HELD.release()
        _HELD = None
