"""Where a training run stands (`TrainState`) and its random number generators: what a
checkpoint records so that a resumed run continues bit-exactly."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TrainState:
    """The loop's counters. `loss_sum` / `loss_count`: this rank's training losses of the epoch
    in progress (after a resume rank 0 holds the checkpoint's sums over all ranks, the others
    start at 0, so the allreduced totals are unchanged)."""

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    best_val_mae: float = math.inf
    epochs_without_improvement: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0

    @classmethod
    def from_checkpoint(cls, checkpoint: dict | None, rank: int) -> "TrainState":
        if not checkpoint:
            return cls()
        loss_sum, loss_count = checkpoint["partial_loss"] if rank == 0 else (0.0, 0)
        return cls(checkpoint["epoch"], checkpoint["batch_in_epoch"], checkpoint["global_step"],
                   checkpoint["best_val_mae"], checkpoint["epochs_without_improvement"], loss_sum, loss_count)

    def checkpoint_fields(self, comm) -> dict:
        """The checkpoint's form of this state (collective: the loss sums are summed over ranks)."""
        partial = comm.allreduce(np.array([self.loss_sum, self.loss_count], dtype=np.float64))
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "global_step": self.global_step,
                "best_val_mae": self.best_val_mae, "epochs_without_improvement": self.epochs_without_improvement,
                "partial_loss": (float(partial[0]), int(partial[1]))}

    def finished(self, t) -> bool:
        """Nothing left to train (`t`: the train config): every epoch done, the step budget
        spent, or early-stopped."""
        return (self.epoch >= t.epochs or bool(t.max_steps and self.global_step >= t.max_steps)
                or self.early_stopped(t))

    def early_stopped(self, t) -> bool:
        return bool(t.patience and self.epochs_without_improvement >= t.patience)

    def record_step(self, loss: float) -> None:
        """A step done (a non-finite loss, a step not taken, advances the counters, not the sums)."""
        self.global_step += 1
        self.batch_in_epoch += 1
        if math.isfinite(loss):
            self.loss_sum, self.loss_count = self.loss_sum + loss, self.loss_count + 1

    def record_validation(self, mae: float) -> bool:
        """A finished epoch's validation MAE: updates best and patience; True if it improved."""
        improved = math.isfinite(mae) and mae < self.best_val_mae  # a diverged model is never best
        if improved:
            self.best_val_mae, self.epochs_without_improvement = mae, 0
        else:
            self.epochs_without_improvement += 1
        return improved

    def next_epoch(self) -> None:
        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        self.loss_sum, self.loss_count = 0.0, 0


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
