"""One training step, shared by `pgti train` (pgti.train.loop) and `pgti bench epoch`.

    y_scaled = scaler(y)                         teacher forcing sees model units
    out = model(x, y_scaled, global_step)        bfloat16 autocast on a GPU when train.bf16
    loss = loss(inverse_scaler(out), y)          in data units, missing readings masked
    backward; engine: allreduce, clip the averaged gradients, optimizer step; scheduler step
    (a non-finite averaged gradient norm: no optimizer step, and the loss reads NaN)

plus what builds its parts from a config: the optimizer and the learning-rate factor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from pgti.config import Config


@dataclass
class StepParts:
    """Everything a training step uses besides the batch; built once per run.

    model      the module to call: the engine's (DDP wraps it) or the bare one
    targets    the raw array's target channels (what the scaler transforms for y)
    loss       `loss(pred, y, missing_value)` in data units (pgti.train.metrics.training_loss)
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    engine: object
    scaler: object
    targets: list[int]
    missing_value: float
    loss: Callable
    grad_clip: float = 0.0
    scheduler: object = None
    autocast: bool = False  # bfloat16 autocast (train.bf16 on a GPU)


def train_step(parts: StepParts, x: torch.Tensor, y: torch.Tensor, global_step: int) -> torch.Tensor:
    """Train on one batch (x [B, Tin, N, Cx] model units, y [B, Tout, N, Cy] data units);
    returns the loss (a 0-d tensor, not synchronized). When the averaged gradients' norm is not
    finite (the same on every rank), the parameters are left as they were and the loss is NaN."""
    y_scaled = parts.scaler.transform(y, channels=parts.targets)  # teacher forcing sees model units
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=parts.autocast):
        out = parts.model(x, y_scaled, global_step=global_step)
    pred = parts.scaler.inverse_transform(out.float(), channels=parts.targets)
    loss = parts.loss(pred, y, parts.missing_value)
    parts.optimizer.zero_grad()  # (set_to_none is the default; Horovod 0.28 takes no argument)
    loss.backward()
    # (a DDP wrapper's parameters are its module's, in the same order)
    stepped = parts.engine.clip_and_step(parts.optimizer, parts.model.parameters(), parts.grad_clip)
    if parts.scheduler is not None:
        parts.scheduler.step()
    return loss if stepped else torch.full_like(loss.detach(), float("nan"))


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t.lr, eps=t.eps, weight_decay=t.weight_decay)


def lr_factor(cfg: Config, steps_per_epoch: int, world_size: int):
    """Multiplier of the base learning rate at optimizer step `step` (0-based)."""
    t, total = cfg.train, cfg.train.epochs * steps_per_epoch
    scale = {"none": 1.0, "linear": float(world_size), "sqrt": math.sqrt(world_size)}[cfg.dist.lr_scaling]
    warmup = int(t.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if t.schedule == "multistep":
            decay = t.gamma ** sum(step // steps_per_epoch >= m for m in t.milestones)
        elif t.schedule == "cosine":
            decay = 0.5 * (1.0 + math.cos(math.pi * min(1.0, step / max(1, total))))
        else:
            decay = 1.0
        if warmup and step < warmup:  # ramp to the (scaled) rate, as in Goyal et al. 2017
            ramp = (step + 1) / warmup
            start = 1.0 if scale > 1.0 else 0.0
            return decay * (start + (scale - start) * ramp)
        return decay * scale

    return factor


def make_scheduler(cfg: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int, world_size: int,
                   state: dict | None = None):
    """The LambdaLR of `lr_factor`; `state`: a checkpoint's scheduler state (resume)."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch, world_size))
    if state is not None:
        scheduler.load_state_dict(state)
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = lr  # constructing the scheduler reset it to step 0's rate
    return scheduler
