"""One job per run directory: rank 0 holds `R/.lock` while a `pgti train` runs.

Taking it. The lock *is* the file `R/.lock`, created atomically with its whole record: the
record is written to a temporary file and hard-linked to `R/.lock` (`link()` fails if the
name exists, and is atomic on local filesystems, NFS, Lustre and GPFS alike, whatever their
flock options). The record holds host, PID, the process's start time, the boot id, the job id,
the start time and the command. The holder then also takes a `flock` on it (where flock works)
and refreshes the file's mtime every `heartbeat` seconds from a daemon thread.

When `R/.lock` exists, its holder is judged:
- on this host (same boot): alive while its PID runs the same process (start time); a holder
  suspended for hours is still alive, one killed by SIGKILL or the OOM killer is gone at once;
- on another host: alive while it holds its flock (where flock is coherent across nodes),
  else while its heartbeat is younger than `stale_after` (5 heartbeats): a lost node's lock
  is taken over after that.
A live holder refuses the start with one line naming it (UserError, exit 2), and nothing in R
is touched, unless it is an earlier start of the *same* batch job (a Slurm requeue, a PBS
rerun: the same job id): then the start waits up to `wait` seconds for it to go. A dead
holder's file is removed under a short takeover lock (`R/.lock.takeover`, O_EXCL), after
checking it is still the very file judged (inode and mtime), and the start retries.

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
import secrets
import socket
import sys
import threading
import time
from pathlib import Path

from pgti.errors import UserError

log = logging.getLogger("pgti.train")
LOCK_NAME, TAKEOVER_NAME = ".lock", ".lock.takeover"
HEARTBEAT_ENV, FLOCK_ENV = "PGTI_LOCK_HEARTBEAT", "PGTI_RUN_LOCK"
DEFAULT_HEARTBEAT_S = 30.0
_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
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


def use_flock() -> bool:
    mode = os.environ.get(FLOCK_ENV, "flock")
    if mode not in ("flock", "noflock"):
        raise UserError(f"{FLOCK_ENV}={mode!r}: choose flock (default) or noflock (a filesystem whose flock hangs "
                        "or misbehaves: liveness then comes from PIDs and heartbeats alone)")
    return mode == "flock"


def own_record(heartbeat: float) -> dict:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _start_ticks(os.getpid()),
            "boot_id": _boot_id(), "job_id": job_id(), "started": now,
            "started_utc": datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "heartbeat_s": heartbeat, "stale_after_s": 5 * heartbeat, "command": " ".join(sys.argv)}


def read_record(path: Path) -> tuple[dict | None, float | None]:
    """(the record, or None if empty or unreadable; seconds since the last heartbeat) of a
    lock file; (None, None) when there is none."""
    return _read(path)[:2]


def _read(path: Path):
    """read_record's (record, age), and the identity (device, inode, mtime) of the very file
    read: a takeover must remove that file and no other."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, None, None
    except OSError:  # another user's 0600 file
        try:
            st = os.stat(path)
        except OSError:
            return None, None, None
        return None, time.time() - st.st_mtime, (st.st_dev, st.st_ino, st.st_mtime_ns)
    try:
        st = os.fstat(fd)
        identity, age = (st.st_dev, st.st_ino, st.st_mtime_ns), time.time() - st.st_mtime
        try:
            record = json.loads(os.read(fd, 65536))
        except (OSError, ValueError):  # a directory, garbage
            return None, age, identity
    finally:
        os.close(fd)
    return (record if isinstance(record, dict) else None), age, identity


def holder_alive(record: dict, age: float, flocked: bool | None = None) -> bool | None:
    """True/False when it can be told; None when the holder is on another host with a fresh
    heartbeat (alive as far as anyone here can tell). `flocked`: whether someone holds a flock
    on the file (None: not probed)."""
    if record.get("host") == socket.gethostname() and record.get("boot_id", "") == _boot_id():
        pid = int(record.get("pid") or 0)
        return pid > 0 and _start_ticks(pid) is not None and _start_ticks(pid) == record.get("pid_start")
    if record.get("host") == socket.gethostname():
        return False  # this host rebooted since
    if flocked:
        return True
    if age > float(record.get("stale_after_s", 5 * DEFAULT_HEARTBEAT_S)):
        return False
    return None


def describe(record: dict | None, age: float | None) -> str:
    if record is None:
        return "an unknown holder (its lock file has no readable record)"
    job = f", job {record['job_id']}" if record.get("job_id") else ""
    beat = f", heartbeat {age:.0f} s ago" if age is not None else ""
    return f"host {record.get('host')} (PID {record.get('pid')}{job}, since {record.get('started_utc')}{beat})"


def _flock_probe(path: Path) -> bool | None:
    """Whether someone holds a flock on `path` (None: no flock here, or the file is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return True if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) else None
    finally:
        os.close(fd)  # (releases a flock we took)
    return False


class RunLock:
    """The lock on one run directory, held by this process (`acquire`, then `release`)."""

    def __init__(self, run_dir: str | os.PathLike, wait: float = 300.0, stopped=None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.wait, self.stopped = wait, stopped or (lambda: None)
        self.heartbeat = heartbeat_seconds()
        self.flock = use_flock()
        self.fd: int | None = None
        self.note = ""  # a takeover of a dead holder's lock, for the run's log
        self._stop = threading.Event()

    def acquire(self) -> "RunLock":
        deadline, said = time.monotonic() + self.wait, False
        while True:
            if self._create():
                return self
            record, age, identity = self._read_settled()
            if identity is None:
                continue  # released just now: try again
            flocked = _flock_probe(self.path) if self.flock else None
            # an unreadable record (corrupt, or another user's 0600 file): alive while its mtime is fresh
            alive = holder_alive(record, age, flocked) if record else (None if age < 5 * self.heartbeat else False)
            if alive is False:
                self._take_over(record, age, identity)
                continue
            if not (record and record.get("job_id") and record["job_id"] == job_id() and time.monotonic() < deadline):
                raise UserError(self._refusal(record, age, flocked))
            if self.stopped():
                raise UserError(f"--run-dir {self.run_dir}: stopped by {self.stopped()} while waiting for an earlier "
                                "start of this job to let go; nothing was written")
            if not said:
                log.warning("--run-dir %s: an earlier start of this job (%s) still holds it: waiting up to %.0f s for "
                            "it to exit", self.run_dir, describe(record, age), self.wait)
                said = True
            time.sleep(min(1.0, self.heartbeat))

    def _refusal(self, record, age, flocked) -> str:
        text = f"--run-dir {self.run_dir}: in use by another pgti train on {describe(record, age)}"
        if record and record.get("host") != socket.gethostname():
            text += (" (it still holds its flock: if that host is down, remove the lock file once you are sure)"
                     if flocked else f" (taken over {record.get('stale_after_s', 0):.0f} s after its last heartbeat "
                     "if that host is down)")
        return text + f"; wait for it to end (pgti status {self.run_dir} shows it), or give another --run-dir"

    def _create(self) -> bool:
        """Create R/.lock with our whole record at once (link of a written temp file); False if it exists."""
        data = json.dumps(own_record(self.heartbeat)).encode()
        tmp = self.run_dir / f".lock.tmp-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
            try:
                os.link(tmp, self.path)  # the file, record and all, appears at once or not at all
            except FileExistsError:
                os.close(fd)
                return False
            except OSError as exc:
                if os.fstat(fd).st_nlink == 2:  # NFS: the reply was lost, the link was made
                    pass
                elif exc.errno in _NO_LINK:  # no hard links here: O_EXCL, record written right after
                    os.close(fd)
                    return self._create_excl(data)
                else:
                    os.close(fd)
                    raise
        finally:
            tmp.unlink(missing_ok=True)
        self._start(fd)  # (the fd is the lock file's inode: no second lookup by name)
        return True

    def _create_excl(self, data: bytes) -> bool:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        os.write(fd, data)
        os.fsync(fd)
        self._start(fd)
        return True

    def _start(self, fd: int) -> None:
        self.fd = fd
        if self.flock:
            for _ in range(20):  # a contender's probe holds it for microseconds
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno in _NO_FLOCK:
                        break
                    time.sleep(0.05)
        threading.Thread(target=self._beat, name="pgti-lock-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            with contextlib.suppress(OSError):
                os.utime(self.fd)

    def _read_settled(self):
        """The holder's (record, age, identity); a file still being written (O_EXCL fallback) is
        read again shortly."""
        for _ in range(10):
            record, age, identity = _read(self.path)
            if record is not None or age is None or age > 2:
                return record, age, identity
            time.sleep(0.1)
        return record, age, identity

    def _take_over(self, record, age, judged) -> None:
        """Remove a dead holder's lock file if it is still the very file judged (`judged`: its
        device, inode and mtime when its record was read); one contender at a time."""
        guard = self.run_dir / TAKEOVER_NAME
        try:
            fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            with contextlib.suppress(OSError):
                if time.time() - os.stat(guard).st_mtime > 60:  # a contender died in its takeover
                    os.unlink(guard)
            time.sleep(0.2)
            return
        try:
            now = os.stat(self.path)
            if (now.st_dev, now.st_ino, now.st_mtime_ns) == judged:
                os.unlink(self.path)
                if record and record.get("pid") is not None:
                    self.note = (f"--run-dir {self.run_dir}: took over the lock left by {describe(record, age)}: "
                                 "that holder is gone")
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
            os.unlink(guard)

    def release(self) -> None:
        """Remove the lock file (if it is still ours), then let go."""
        if self.fd is None:
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


_HELD: RunLock | None = None  # the lock this process holds (rank 0 of a training job)


def hold(run_dir: str | os.PathLike, wait: float = 300.0, stopped=None) -> str:
    """Take the run directory's lock for the rest of this process (released at exit; a killed
    holder's lock is judged dead by its successor). Creates the directory itself only.
    `stopped()`: the name of a stop signal received while waiting, if any. Returns a note to
    log when a dead holder's lock was taken over, else ""."""
    global _HELD
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"--run-dir {path}: exists and is not a directory; choose another --run-dir") from None
    except OSError as exc:
        raise UserError(f"--run-dir {path}: cannot create it ({exc.strerror}); choose a writable --run-dir") from None
    try:
        _HELD = RunLock(path, wait, stopped).acquire()
    except OSError as exc:
        raise UserError(f"--run-dir {path}: cannot write its lock file {path / LOCK_NAME} ({exc.strerror}); choose a "
                        "writable --run-dir") from None
    import atexit

    atexit.register(release_held)
    return _HELD.note


def release_held() -> None:
    global _HELD
    if _HELD is not None:
        _HELD.release()
        _HELD = None
