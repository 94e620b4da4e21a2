"""The one output rule: every file a pgti command writes goes through here.

`check_output(path, ...)`, before any work, refuses (UserError: one line, exit 2):
  - the file this command reads (a dataset, a checkpoint, an input CSV), by path, symlink or
    hard link;
  - a run's state: anything in a run's `checkpoints/`, or its config.toml, metrics.jsonl,
    train.log, status.json or .lock;
  - a non-regular file (a directory where a file is due, a device, socket or FIFO: as root an
    atomic rename would replace /dev/full with a regular file);
  - an existing file, unless `force` (`--force`);
  - a path whose directory cannot be created or written.
`atomic_output(path)` then writes: into a temporary file next to the target, fsync, rename
over it, fsync the directory; an error leaves the target as it was and no temporary behind.
`write_text_output` / `save_figure_output` are the common cases.
"""
from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from pgti.errors import UserError

RUN_STATE = ("config.toml", "metrics.jsonl", "train.log", "status.json", ".lock")


def add_force_argument(p, help: str = "replace output files that already exist") -> None:
    p.add_argument("--force", action="store_true", help=help)


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)
    return False


def _run_dir_of(path: Path) -> Path | None:
    """The run directory whose state `path` would be, if any."""
    real = Path(os.path.realpath(path))
    for run in (real.parent, real.parent.parent):
        if (run / "config.toml").is_file() and (run / "checkpoints").is_dir():
            if real.parent == run / "checkpoints" or (real.parent == run and real.name in RUN_STATE):
                return run
    return None


def check_output(path: str | os.PathLike, *, option: str = "--out", force: bool = False,
                 reads: Iterable = (), directory: bool = False) -> Path:
    """`path`, checked against the output rule (see the module); creates its parent directory.
    `reads`: the files this command reads. `directory`: the output is a directory (it may
    exist; the files written into it are checked one by one)."""
    path = Path(path)
    where = f"{option} {path}"
    for source in reads:
        if source is not None and _same_file(path, Path(source)):
            raise UserError(f"{where}: is also an input file of this command ({source}), which writing would destroy; "
                            "write to another file")
    run = _run_dir_of(path)
    if run is not None:
        raise UserError(f"{where}: is part of the run in {run} (its checkpoints or state); write somewhere else")
    if os.path.lexists(path):
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:  # a dangling symlink
            raise UserError(f"{where}: cannot be used ({exc.strerror}); give another path") from None
        if directory:
            if not stat.S_ISDIR(mode):
                raise UserError(f"{where}: exists and is not a directory; give a directory")
        elif stat.S_ISDIR(mode):
            raise UserError(f"{where}: is a directory; give a file name, e.g. {path / 'out'}{_suffix(option)}")
        elif not stat.S_ISREG(mode):
            raise UserError(f"{where}: is not a regular file (a device, socket or FIFO); give a file path")
        elif not force:
            raise UserError(f"{where}: exists; add --force to replace it, or choose another path")
    if directory:  # written into right away: made now
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{where}: cannot create {path} ({exc.strerror}); choose a writable path") from None
    # a file's missing directories are made when it is written (a refusal later leaves none behind):
    # here the nearest existing one must take new files
    parent = path if directory else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{where}: {parent} is not a directory; choose another path")
    probe = parent / f".pgti-write-probe-{os.getpid()}"
    try:  # what os.access cannot tell (/proc, a read-only mount as root, a full inode table)
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"{where}: cannot write in {parent} ({exc.strerror}); choose a writable path") from None
    return path


def _suffix(option: str) -> str:
    return {"--chart": ".png", "--json": ".json"}.get(option, ".h5")


class AtomicOutput:
    """A temporary file next to `path` (`.tmp`) that `commit()` fsyncs and renames over `path`
    and `discard()` removes: `path` is never seen half-written. An OSError of either is one
    UserError naming the path (`option` None: the OSError itself, for callers with their own
    message, e.g. checkpoints). Missing directories of `path` are made. For writers that keep
    the file open across calls (DatasetWriter); otherwise use `atomic_output`."""

    def __init__(self, path: str | os.PathLike, option: str | None = "--out"):
        self.path, self.option = Path(path), option
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}{self.path.suffix}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.error(exc) from None

    def error(self, exc: OSError) -> Exception:
        if self.option is None:
            return exc
        return UserError(f"{self.option} {self.path}: cannot write it ({exc.strerror or exc}); choose a writable "
                         "path with enough space")

    def commit(self) -> Path:
        try:
            with open(self.tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise self.error(exc) from None
        with contextlib.suppress(OSError):
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return self.path

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, option: str | None = "--out") -> Iterator[Path]:
    """Yield a temporary path next to `path`; when the block ends without an error the file
    there is fsynced and renamed over `path`. Any error leaves `path` untouched and removes the
    temporary file; an OSError is one UserError naming the path."""
    out = AtomicOutput(path, option)
    try:
        yield out.tmp
    except OSError as exc:
        out.discard()
        if option is None:
            raise
        raise out.error(exc) from None
    except BaseException:
        out.discard()
        raise
    out.commit()


def write_text_output(path: str | os.PathLike, text: str, *, option: str = "--out") -> Path:
    """`text` to `path`, atomically (check the path with `check_output` first)."""
    with atomic_output(path, option=option) as tmp:
        tmp.write_text(text)
    return Path(path)


def save_figure_output(fig, path: str | os.PathLike, *, option: str = "--chart", dpi: int = 100) -> Path:
    """A matplotlib figure to `path` as PNG, atomically."""
    with atomic_output(path, option=option) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(path)
