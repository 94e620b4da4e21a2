"""Training progress on rank 0: a tqdm bar at a terminal, a log line every N steps otherwise."""
from __future__ import annotations

import logging
import time

from pgti.config import Config

log = logging.getLogger("pgti.train")


class Progress:
    """A tqdm bar on rank 0 at a terminal; a log line every N steps otherwise."""

    def __init__(self, cfg: Config, world, total: int, initial: int, epoch: int, batch_size: int):
        mode = cfg.log.progress if world.rank == 0 else "none"
        if mode == "auto":
            from pgti.distributed.world import stdout_is_terminal

            mode = "bar" if stdout_is_terminal() else "lines"
        self.mode = mode
        self.every, self.epoch, self.total = cfg.log.every_steps, epoch, total
        self.samples_per_step = batch_size * world.size
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}", unit="batch", dynamic_ncols=True)
        self.started, self.done = time.perf_counter(), 0

    def step(self, k: int, loss: float) -> None:
        self.done += 1
        rate = self.done * self.samples_per_step / max(1e-9, time.perf_counter() - self.started)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:,.0f}", refresh=False)
            self.bar.update(1)
        elif self.mode == "lines" and ((k + 1) % self.every == 0 or k + 1 == self.total):
            eta = (self.total - k - 1) * (time.perf_counter() - self.started) / self.done
            log.info("epoch %d step %d/%d loss %.4f  %.0f samples/s  eta %.0fs", self.epoch + 1, k + 1,
                     self.total, loss, rate, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
