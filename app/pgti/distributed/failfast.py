"""Fail fast on every rank: one message, and no rank left waiting in a collective.

A rank that raises while the others wait in a collective would hang the job until the
walltime. `abort_on_error(world)` turns any exception into one printed message and
`COMM_WORLD.Abort(code)` (2 for a `UserError`, 1 otherwise), which kills every rank at once.

Errors that every rank raises together are marked as such (`raised_on_all_ranks`): rank 0
alone prints them and all ranks exit normally with the same status. Two collectives make
them: `run_on_root` (work only rank 0 does, such as reading a file, whose error every rank
re-raises) and `raise_if_any_failed` (work every rank does; the lowest failing rank's error is
raised everywhere). A `UserError` stays a `UserError` on every rank; anything else becomes a
`RuntimeError` naming the failing rank and carrying its traceback.

No global state; mpi4py is imported when a collective or an abort needs it.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable

from pgti.errors import EXIT_FAILURE, EXIT_USAGE, UserError

if TYPE_CHECKING:
    from pgti.distributed.world import World


def _report(exc: BaseException) -> tuple[bool, str, str]:
    """What another rank needs to re-raise `exc`: (is a UserError, message, traceback text)."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return isinstance(exc, UserError), str(exc), text


def _on_all_ranks(exc: BaseException, traceback_text: str | None = None) -> BaseException:
    """Mark `exc` as raised by every rank at once: rank 0 alone reports it."""
    exc.raised_on_all_ranks = True  # type: ignore[attr-defined]
    if traceback_text is not None:
        exc.remote_traceback = traceback_text  # type: ignore[attr-defined]
    return exc


def _rebuild(report: tuple[bool, str, str], source_rank: int) -> BaseException:
    is_user_error, message, text = report
    if is_user_error:
        return _on_all_ranks(UserError(message))
    return _on_all_ranks(RuntimeError(f"rank {source_rank} failed: {message}"), text)


def raise_if_any_failed(world: World, error: BaseException | None) -> None:
    """Collective over the world: if any rank passes an exception, every rank raises the same
    one (the lowest failing rank's; a UserError stays a UserError) and only rank 0 reports it
    under `abort_on_error`. Use it after work where ranks may fail independently."""
    reports = world.comm.allgather(None if error is None else _report(error))
    for source_rank, report in enumerate(reports):
        if report is not None:
            if source_rank == world.rank and error is not None:
                raise _on_all_ranks(error) from None
            raise _rebuild(report, source_rank) from None


def run_on_root(world: World, fn: Callable[..., Any], *args, **kwargs) -> Any:
    """Call `fn(*args, **kwargs)` on rank 0 only and broadcast its (picklable) result.

    If it raises, every rank raises the same error (see `raise_if_any_failed`), so an error
    that only rank 0 can see (a bad file) ends every rank with one message."""
    result, report = None, None
    if world.is_root:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001  (any failure must reach the other ranks)
            report = exc
    result, remote = world.comm.bcast((result, None if report is None else _report(report)), root=0)
    if remote is not None:
        if world.is_root:
            raise _on_all_ranks(report) from None
        raise _rebuild(remote, 0) from None
    return result


class abort_on_error(contextlib.ContextDecorator):
    """Fail fast on any rank: `with abort_on_error(world): ...` or `@abort_on_error(world)`.

    An exception on one rank prints one message on that rank (a UserError: its one line;
    anything else: the traceback), flushes, and calls `COMM_WORLD.Abort(code)`, which ends
    every rank (no rank left waiting in a collective). code = 2 for a UserError, 1 otherwise.
    An error marked as raised on all ranks (`run_on_root`, `raise_if_any_failed`) is printed
    by rank 0 alone, then every rank exits normally with that code. A single-process run
    exits normally too. `SystemExit(0)` passes through untouched.
    """

    def __init__(self, world: World | None = None, stream=None):
        self.world = world
        self.stream = stream

    def __enter__(self) -> "abort_on_error":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            return False
        if isinstance(exc, BrokenPipeError) and _world_size(self.world) == 1:
            return False  # `pgti evaluate RUN | head`: the command line ends it quietly (pgti.cli)
        from mpi4py import MPI

        comm = self.world.comm if self.world is not None else MPI.COMM_WORLD
        rank, size = comm.Get_rank(), comm.Get_size()
        stream = self.stream or sys.stderr
        collective = bool(getattr(exc, "raised_on_all_ranks", False))
        code = _exit_code(exc)
        if rank == 0 or not collective:
            message = _message(exc, rank, size, collective)
            if message:
                print(message, file=stream, end="" if message.endswith("\n") else "\n")
        _flush(stream)
        if collective and size > 1:
            keep_exit_status()  # before the barrier: a rank out of it first may exit, and srun -K then TERMs us
            comm.Barrier()  # rank 0's message is out before any rank exits (exit may kill the job)
        if collective or size == 1:
            raise SystemExit(code) from None
        comm.Abort(code)
        return False  # not reached


def keep_exit_status() -> None:
    """Call once this rank's exit status is decided and agreed (its checkpoint complete):
    SIGTERM is ignored from here on, so that a launcher ending the ranks still tearing down
    cannot turn that status into 143. `srun --kill-on-bad-exit` does exactly that as soon as
    the first rank exits non-zero, with 75 ("checkpointed, requeue me") too, and the job
    script would then see a failure. Python leaves an ignored signal ignored through its own
    finalization; a rank that hangs there still ends by the launcher's SIGKILL."""
    with contextlib.suppress(ValueError):  # not the main thread: nothing to keep
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _world_size(world) -> int:
    if world is not None:
        return world.size
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_size()


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    return EXIT_USAGE if isinstance(exc, UserError) else EXIT_FAILURE


def _message(exc: BaseException, rank: int, size: int, collective: bool) -> str:
    where = "" if collective or size == 1 else f" on rank {rank} of {size}"
    if isinstance(exc, SystemExit):
        return "" if isinstance(exc.code, int) else f"pgti: error{where}: {exc.code}"
    if isinstance(exc, UserError):
        return f"pgti: error{where}: {exc}"
    if isinstance(exc, KeyboardInterrupt):
        return f"pgti: interrupted{where}"
    text = getattr(exc, "remote_traceback", None) or "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"pgti: internal error{where}:\n{text}"


def _flush(stream) -> None:
    for s in (sys.stdout, sys.stderr, stream):
        with contextlib.suppress(Exception):
            s.flush()
