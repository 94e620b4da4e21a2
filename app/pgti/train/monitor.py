"""What rank 0 reports while training, for people and tools outside the job:

    R/status.json    where the run stands (state, epoch, step of total, last loss, samples/s,
                     step time, exit status), rewritten atomically at most every few seconds,
                     at every epoch end and at exit; read by `pgti status R`
    R/tensorboard/   TensorBoard event files (`log.tensorboard`): per-step loss, lr and
                     samples/s; per-epoch validation MAE/RMSE/MAPE (overall and at 3/6/12
                     steps), epoch time, peak host and device memory; the config as text

All x axes are the global step, so a resumed run purges what its killed predecessor logged
after the checkpoint (`purge_step`) and continues the same curves without duplicates.
No torch import at module level: `pgti status` imports STATUS_NAME from here.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from pgti.errors import UserError
from pgti.outputs import write_text_output
from pgti.train.lock import job_id

log = logging.getLogger("pgti.train")
STATUS_NAME = "status.json"
TENSORBOARD_DIR = "tensorboard"
_EVERY_S = 5.0  # status.json rewrites while steps run (a metadata operation each: cheap on Lustre too)


class Monitor:
    """Rank 0's status file and TensorBoard writer; on other ranks every method does nothing."""

    def __init__(self, run_dir: Path, cfg, world, *, steps_per_epoch: int, state, resumed: bool, config_text: str):
        self.active = world.rank == 0
        self.path = Path(run_dir) / STATUS_NAME
        self.samples_per_step = cfg.train.batch_size * world.size
        t = cfg.train
        total = t.epochs * steps_per_epoch
        self.status = {"state": "running", "exit_status": None, "reason": "", "host": socket.gethostname(),
                       "pid": os.getpid(), "job_id": job_id(), "world_size": world.size, "started": time.time(),
                       "updated": time.time(), "epoch": state.epoch, "epochs": t.epochs,
                       "batch_in_epoch": state.batch_in_epoch, "steps_per_epoch": steps_per_epoch,
                       "global_step": state.global_step,
                       "total_steps": min(total, t.max_steps) if t.max_steps else total,
                       "train_loss": None, "step_time_s": None, "samples_per_s": None}
        self._last_write, self._recent = 0.0, []
        self.board = None
        if self.active and cfg.log.tensorboard:
            # (a start without a checkpoint purges too: a predecessor killed before its first one)
            self.board = _open_board(Path(run_dir) / TENSORBOARD_DIR, state.global_step,
                                     None if resumed else config_text)
        if self.active:
            self._write()

    def step(self, state, loss: float, lr: float, seconds: float) -> None:
        if not self.active:
            return
        self._recent = (self._recent + [seconds])[-50:]
        step_time = sum(self._recent) / len(self._recent)
        rate = self.samples_per_step / max(seconds, 1e-9)
        finite = loss == loss and abs(loss) != float("inf")
        self.status.update(epoch=state.epoch, batch_in_epoch=state.batch_in_epoch, global_step=state.global_step,
                           step_time_s=step_time, samples_per_s=self.samples_per_step / max(step_time, 1e-9),
                           **({"train_loss": loss} if finite else {}))
        if self.board is not None:
            if finite:
                self.board.add_scalar("train/loss", loss, state.global_step)
            self.board.add_scalar("train/lr", lr, state.global_step)
            self.board.add_scalar("train/samples_per_s", rate, state.global_step)
        if time.time() - self._last_write >= _EVERY_S:
            self._write()

    def checkpointed(self, state) -> None:
        """A checkpoint is in place: the status says how far it got."""
        if self.active:
            self.status.update(epoch=state.epoch, batch_in_epoch=state.batch_in_epoch, global_step=state.global_step)
            self._write()

    def epoch(self, state, row: dict) -> None:
        """After end_epoch's metrics row (`row["global_step"]` is its x)."""
        if not self.active:
            return
        self.status.update(epoch=state.epoch, batch_in_epoch=state.batch_in_epoch, global_step=state.global_step)
        if self.board is not None:
            step, b = row["global_step"], self.board
            b.add_scalar("epoch/train_loss", row["train_loss"], step)
            b.add_scalar("epoch/time_s", row["epoch_time_s"], step)
            b.add_scalar("epoch/samples_per_s", row["samples_per_s"], step)
            b.add_scalar("memory/peak_rss_bytes_max_rank", row["peak_rss_bytes_max_rank"], step)
            b.add_scalar("memory/peak_rss_bytes_node_sum", row["peak_rss_bytes_node_sum"], step)
            b.add_scalar("memory/peak_device_bytes", row["peak_device_bytes"], step)
            from pgti.train.metrics import REPORT_STEPS  # (torch: training has it loaded; pgti status must not)

            val = row.get("val")
            if val:
                for metric in ("mae", "rmse", "mape"):
                    b.add_scalar(f"val/{metric}", val["overall"][metric], step)
                    for h in val["horizon"]:
                        if h["step"] in REPORT_STEPS:
                            b.add_scalar(f"val_{metric}/step_{h['step']:02d}", h[metric], step)
            b.flush()
        self._write()

    def finish(self, state_name: str, exit_status: int | None, reason: str = "", train_state=None) -> None:
        if not self.active:
            return
        if train_state is not None:
            self.status.update(epoch=train_state.epoch, batch_in_epoch=train_state.batch_in_epoch,
                               global_step=train_state.global_step)
        self.status.update(state=state_name, exit_status=exit_status, reason=reason)
        self._write()
        if self.board is not None:
            self.board.close()
            self.board = None

    def _write(self) -> None:
        self.status["updated"] = self._last_write = time.time()
        try:  # readers see the old or the new file, never half of one
            write_text_output(self.path, json.dumps(self.status, indent=1) + "\n", option="status")
        except UserError as exc:  # a full disk must not end training over a status file
            log.warning("%s", exc)


def _open_board(directory: Path, resumed_at: int, config_text: str | None):
    """A SummaryWriter, or None (with a warning) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("log.tensorboard = true but the tensorboard package is not installed: no event files (pip "
                    "install tensorboard, or set log.tensorboard = false)")
        return None
    # a start from global step G (0 when fresh) redoes steps G+1...: what an earlier start logged there goes
    writer = SummaryWriter(str(directory), purge_step=resumed_at + 1, flush_secs=30)
    if config_text is not None:
        writer.add_text("config", "```\n" + config_text + "\n```", 0)
    return writer
