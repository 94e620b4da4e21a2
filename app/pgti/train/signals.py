"""Stop requests: signals and the walltime.

SIGTERM, SIGUSR1 and SIGINT set a flag; the training loop finishes its step, the ranks agree
(an allreduce of the flag), a checkpoint is written and the process exits with
`EXIT_RESUBMIT` (75): "checkpointed, resubmit me". A second SIGINT interrupts at once while
the ranks are still training; once they agreed to stop (`committed`: the checkpoint is being
written, or is written) it is ignored with a note, so the run still ends with 75.

The walltime comes from `train.time_limit`, or from Slurm's `SLURM_JOB_END_TIME` (unix
seconds, set in every job step). PBS sets no end time in the environment: job scripts pass
the walltime with `--set train.time_limit=...`. The run stops early enough to save a
checkpoint: the margin is measured (the longest step and the longest checkpoint so far, with
a factor and a floor), not guessed.
"""
from __future__ import annotations

import os
import signal
import time

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopRequest:
    """Install with `with StopRequest() as stop:`; `stop.reason` is None until a signal."""

    def __init__(self):
        self.reason: str | None = None
        self.committed = False  # set by the loop once every rank agreed to stop: checkpointing
        self._previous = {}

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.reason == "SIGINT":
            if not self.committed:
                raise KeyboardInterrupt
            os.write(2, b"pgti: already checkpointing after the first interrupt; it exits with 75 when done\n")
            return
        self.reason = self.reason if self.committed else signal.Signals(signum).name

    def __enter__(self) -> "StopRequest":
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Deadline:
    """When to stop so a checkpoint fits before the job's end.

    `started` is the process start (time.time()); `limit_seconds` the allowed duration from
    it, or `end_time` an absolute unix time (whichever is earlier wins).
    """

    FLOOR_SECONDS = 5.0
    FACTOR = 2.0

    def __init__(self, started: float, limit_seconds: float | None = None, end_time: float | None = None):
        ends = [t for t in (started + limit_seconds if limit_seconds else None, end_time) if t]
        self.end = min(ends) if ends else None
        self.longest_step = 0.0
        self.longest_checkpoint = 0.0

    @classmethod
    def from_environment(cls, started: float, time_limit_seconds: float | None) -> "Deadline":
        end = os.environ.get("SLURM_JOB_END_TIME")
        return cls(started, time_limit_seconds, float(end) if end and end.isdigit() else None)

    def record_step(self, seconds: float) -> None:
        self.longest_step = max(self.longest_step, seconds)

    def record_checkpoint(self, seconds: float) -> None:
        self.longest_checkpoint = max(self.longest_checkpoint, seconds)

    @property
    def margin(self) -> float:
        """Seconds to keep free: one more step and a checkpoint, doubled, at least the floor."""
        return self.FACTOR * (self.longest_step + self.longest_checkpoint) + self.FLOOR_SECONDS

    def expired(self, now: float | None = None) -> bool:
        if self.end is None:
            return False
        return (now if now is not None else time.time()) >= self.end - self.margin
