"""The training loop, in one place.

    for epoch:                      # window order from (seed, epoch): any rank, any resume
        for batch of this rank:     # gathered from the node-shared raw array
            forward, masked MAE in data units, backward, allreduce (engine), clip, step
            agree on stop (signal / walltime) and periodic checkpoints: one tiny allreduce
        validate (allreduced sums), log, plot, best model, early stopping, checkpoint

A stop request (SIGTERM/SIGUSR1/SIGINT or the walltime) ends the step, checkpoints and
returns EXIT_RESUBMIT. Resuming restores model, optimizer, scheduler, scaler, every rank's RNG
states and the position inside the epoch, so a killed-and-resumed run ends bit-identical to
an uninterrupted one (same world size, same device type).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import random
import signal
import time

import numpy as np
import torch

from pgti import __version__
from pgti.config import Config, config_hash, parse_duration, to_dict
from pgti.distributed.engine import make_engine
from pgti.distributed.world import run_on_root
from pgti.errors import EXIT_OK, EXIT_RESUBMIT, UserError
from pgti.train.checkpoint import RESUME_KEYS, CheckpointManager, check_config_hash, find_resumable, load_checkpoint
from pgti.train.evaluate import evaluate_split
from pgti.train.metrics import format_table, masked_mae_loss
from pgti.train.pipeline import build_pipeline
from pgti.train.plots import plot_curves
from pgti.train.rundir import RunDir, peak_device_bytes, peak_rss_bytes, release_free_heap
from pgti.train.session import build_model, check_dataset, dataset_identity, load_weights, resolve_device
from pgti.train.signals import Deadline, StopRequest

log = logging.getLogger("pgti.train")


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


def make_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(model.parameters(), lr=t.lr, eps=t.eps, weight_decay=t.weight_decay)


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


def check_ranks_agree(world, model: torch.nn.Module) -> bool:
    """Compare a digest of every rank's parameters (data-parallel ranks must hold identical
    ones); log it, or an error naming the ranks that diverged."""
    digest = hashlib.sha256()
    for tensor in model.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digests = world.comm.allgather(digest.hexdigest()[:16])
    if world.rank == 0:
        if len(set(digests)) == 1:
            log.info("parameters identical on all %d ranks (sha256 %s)", world.size, digests[0])
        else:
            log.error("ranks disagree on parameters: %s", ", ".join(f"rank {r}: {d}" for r, d in enumerate(digests)))
    return len(set(digests)) == 1


def train(cfg: Config, run: RunDir, world, resume: str | None = None, ignore_config: bool = False,
          stop: StopRequest | None = None) -> int:
    """Train (or resume) the run in `run`; returns EXIT_OK or EXIT_RESUBMIT.

    `stop`: the caller's installed StopRequest (installed at process start, so a signal that
    arrives while the data loads still ends in a checkpoint after the first step)."""
    from mpi4py import MPI

    started = time.time()
    t = cfg.train
    device = resolve_device(cfg, world)
    chash = config_hash(cfg)
    manager = CheckpointManager(run.checkpoints, cfg.checkpoint.keep_last)

    # ---- resume point: rank 0 finds and reads the checkpoint once and broadcasts it (one
    # file read per job, not one per rank hitting the parallel file system at once)
    def resume_point():
        if not resume:
            return None, None
        if resume != "auto":
            if not os.path.isfile(resume):
                raise UserError(f"--resume {resume}: no such checkpoint; use --resume auto or a file in "
                                f"{run.checkpoints}")
            loaded = load_checkpoint(resume, required=RESUME_KEYS)
            check_config_hash(resume, loaded, chash, ignore_config)
            return resume, loaded
        hit = find_resumable(manager, chash, ignore_config)
        return (str(hit[0]), hit[1]) if hit else (None, None)

    # an unreadable file, a foreign config: one message, every rank ends
    found, state = run_on_root(world, resume_point)
    if found:
        log.info("resuming from %s (epoch %d, step %d in epoch, global step %d)", found, state["epoch"],
                 state["batch_in_epoch"], state["global_step"])

    pipeline = build_pipeline(cfg, world, device, scaler_state=state["scaler"] if state else None,
                              before_load=(lambda info, _: check_dataset(state, info, found, world)) if state else None)
    seed_everything(t.seed)  # same initial weights on every rank (and rank 0's are broadcast anyway)
    model = build_model(cfg, pipeline).to(device)
    epoch, batch_in_epoch, global_step = 0, 0, 0
    best, stale, loss_sum, loss_count = math.inf, 0, 0.0, 0
    if state:
        load_weights(model, state["model"], found, world)
        epoch, batch_in_epoch, global_step = state["epoch"], state["batch_in_epoch"], state["global_step"]
        best, stale = state["best_val_mae"], state["epochs_without_improvement"]
        if world.rank == 0:  # the checkpoint holds the sums over all ranks; count them once
            loss_sum, loss_count = state["partial_loss"]

    def finished(epoch: int, global_step: int, stale: int) -> bool:
        """Nothing left to train: every epoch done, the step budget spent, or early-stopped."""
        return (epoch >= t.epochs or bool(t.max_steps and global_step >= t.max_steps)
                or bool(t.patience and stale >= t.patience))

    engine = make_engine(cfg.dist, world, device)
    train_model, optimizer = engine.prepare(model, make_optimizer(cfg, model), state["optimizer"] if state else None)
    steps_per_epoch = len(pipeline.train_starts(0)) // t.batch_size  # equal on every rank, every epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch, world.size))
    if state:
        scheduler.load_state_dict(state["scheduler"])
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = lr  # constructing the scheduler reset it to step 0's rate
    seed_everything(t.seed + 1000 * world.rank + 1)  # per-rank randomness (scheduled sampling)
    if state and len(state["rng"]) == world.size:
        set_rng_state(state["rng"][world.rank])
    elif state and world.rank == 0:
        log.warning("resuming with %d ranks from a %d-rank checkpoint: the run continues, but not bit-exactly",
                    world.size, len(state["rng"]))
    if world.rank == 0:
        run.create(cfg)
        if not state:
            run.truncate_metrics(before_epoch=0)  # rows of an earlier start that never checkpointed
        elif not finished(epoch, global_step, stale):
            # the epoch in progress is trained again from its checkpoint: its row (a partial one,
            # from a stop at max_steps) is rewritten when it ends; a finished run keeps its rows
            run.truncate_metrics(before_epoch=epoch)
        n_params = sum(p.numel() for p in model.parameters())
        log.info("%s: %s parameters; %d ranks on %d node(s); %d steps/epoch of %d x %d samples; engine %s on %s",
                 cfg.model.name, f"{n_params:,}", world.size, world.num_nodes, steps_per_epoch, world.size,
                 t.batch_size, engine.name, device)

    targets = pipeline.spec.targets(pipeline.info.num_channels)
    missing = pipeline.info.missing_value
    limit = parse_duration(t.time_limit) if t.time_limit else None
    deadline = Deadline.from_environment(started, limit)
    last_checkpoint = time.time()
    eval_batch = t.eval_batch_size or t.batch_size
    autocast = t.bf16 and device.type == "cuda"

    def snapshot() -> dict:
        """Everything a resume needs (collective: every rank calls it; rank 0 gets the result)."""
        rngs = world.comm.gather(rng_state(), root=0)
        partial = world.comm.allreduce(np.array([loss_sum, loss_count], dtype=np.float64))
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": pipeline.scaler.state_dict(), "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "global_step": global_step, "best_val_mae": best, "epochs_without_improvement": stale,
                "partial_loss": (float(partial[0]), int(partial[1])), "rng": rngs, "config_hash": chash, "config": to_dict(cfg),
                "dataset": dataset_identity(pipeline.info),
                "world_size": world.size, "versions": {"pgti": __version__, "torch": torch.__version__}}

    def checkpoint() -> None:
        nonlocal last_checkpoint
        began = time.perf_counter()
        state = snapshot()  # collective (RNG gather): every rank calls it
        if world.rank == 0:
            path = manager.save(state, global_step)
            log.info("checkpoint %s", path.name)
        world.comm.Barrier()  # nobody exits before the file is in place
        deadline.record_checkpoint(time.perf_counter() - began)
        last_checkpoint = time.time()

    if state and finished(epoch, global_step, stale) and world.rank == 0:
        log.info("nothing left to train (epoch %d of %d, global step %d, max_steps %d, %d epochs without "
                 "improvement, patience %d): raise train.epochs or train.max_steps to continue", epoch, t.epochs,
                 global_step, t.max_steps, stale, t.patience)
    with contextlib.nullcontext(stop) if stop is not None else StopRequest() as stop:
        while not finished(epoch, global_step, stale):
            batches = pipeline.batcher("train", pipeline.train_starts(epoch), t.batch_size, prefetch=True)
            batches.set_epoch(epoch, start_batch=batch_in_epoch)
            progress = Progress(cfg, world, len(batches), batch_in_epoch, epoch, t.batch_size)
            train_model.train()
            epoch_began = time.perf_counter()
            steps_this_epoch = 0
            for x, y, _ in batches:
                step_began = time.perf_counter()
                y_scaled = pipeline.scaler.transform(y, channels=targets)  # teacher forcing sees model units
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    out = train_model(x, y_scaled, global_step=global_step)
                pred = pipeline.scaler.inverse_transform(out.float(), channels=targets)
                loss = masked_mae_loss(pred, y, missing)
                optimizer.zero_grad()  # (set_to_none is the default; Horovod 0.28 takes no argument)
                loss.backward()
                engine.clip_and_step(optimizer, model.parameters(), t.grad_clip)
                scheduler.step()
                global_step += 1
                batch_in_epoch += 1
                steps_this_epoch += 1
                loss_value = loss.detach().item()
                loss_sum, loss_count = loss_sum + loss_value, loss_count + 1
                progress.step(batch_in_epoch - 1, loss_value)
                deadline.record_step(time.perf_counter() - step_began)
                # One allreduce per step: stop requests, walltime, periodic checkpoint, step budget.
                every = cfg.checkpoint.every_minutes
                signum = int(getattr(signal, stop.reason)) if stop.reason else 0  # which signal, on any rank
                flags = np.array([signum, deadline.expired(),
                                  bool(every) and time.time() - last_checkpoint >= every * 60], dtype=np.int32)
                world.comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MAX)
                stop_now = bool(flags[0] or flags[1])
                if stop_now or flags[2] or (cfg.checkpoint.every_steps and global_step % cfg.checkpoint.every_steps == 0):
                    if batch_in_epoch < len(batches):  # an epoch-end checkpoint follows anyway
                        checkpoint()
                if stop_now:
                    progress.close()
                    if batch_in_epoch >= len(batches):
                        checkpoint()
                    reason = signal.Signals(int(flags[0])).name if flags[0] else "walltime"
                    if world.rank == 0:
                        log.warning("stopping on %s at global step %d: checkpointed; resubmit with --resume auto "
                                    "(exit status %d)", reason, global_step, EXIT_RESUBMIT)
                    engine.close()
                    return EXIT_RESUBMIT
                if t.max_steps and global_step >= t.max_steps:
                    break
            progress.close()
            epoch_time = time.perf_counter() - epoch_began

            finished_epoch = batch_in_epoch >= len(batches)
            totals = np.array([loss_sum, loss_count], dtype=np.float64)
            world.comm.Allreduce(MPI.IN_PLACE, totals, op=MPI.SUM)
            row = {"epoch": epoch, "global_step": global_step, "train_loss": totals[0] / max(1.0, totals[1]),
                   "epoch_time_s": epoch_time,
                   "samples_per_s": steps_this_epoch * t.batch_size * world.size / max(epoch_time, 1e-9),
                   "lr": scheduler.get_last_lr()[0]}
            improved = False
            if (epoch + 1) % t.validate_every == 0 or not finished_epoch or epoch + 1 == t.epochs:
                release_free_heap()
                row["val"] = evaluate_split(pipeline, model, "val", eval_batch, bf16=t.bf16)
                # A stop at max_steps mid-epoch validates for its row only: best, patience and
                # best.pt follow epoch ends, so a resume that finishes the epoch (or evaluate,
                # which falls back to the latest checkpoint) sees an uninterrupted run's state.
                if finished_epoch:
                    improved = row["val"]["overall"]["mae"] < best
                    best, stale = (row["val"]["overall"]["mae"], 0) if improved else (best, stale + 1)
                if best < math.inf:
                    row["best_val_mae"] = best
            peaks = np.array([peak_rss_bytes(), peak_device_bytes(device)], dtype=np.int64)
            node_rss = world.node_comm.allreduce(int(peaks[0]))
            world.comm.Allreduce(MPI.IN_PLACE, peaks, op=MPI.MAX)
            row.update(peak_rss_bytes_max_rank=int(peaks[0]), peak_rss_bytes_node_sum=node_rss,
                       peak_device_bytes=int(peaks[1]))
            if finished_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
                loss_sum, loss_count = 0.0, 0
            # else (stopped at max_steps): the checkpoint keeps the partial sums, so a resume with a
            # higher max_steps ends the epoch with the loss of all its steps
            if world.rank == 0:
                run.append_metrics(row)
                if cfg.log.plots:
                    plot_curves(run.read_metrics(), run.plots)
                val = row.get("val")
                log.info("epoch %d: train loss %.4f, val MAE %s, %.1fs, %.0f samples/s", row["epoch"] + 1,
                         row["train_loss"], f"{val['overall']['mae']:.4f}" if val else "-", epoch_time,
                         row["samples_per_s"])
            if improved:
                best_state = snapshot()
                if world.rank == 0:
                    manager.save_best(best_state)
            checkpoint()
            if t.patience and stale >= t.patience:
                if world.rank == 0:
                    log.info("early stopping: no val improvement for %d epochs", stale)
                break

    check_ranks_agree(world, model)
    if world.rank == 0:
        rows = run.read_metrics()
        final = rows[-1].get("val") if rows else None
        if final:
            log.info("final val metrics:\n%s", format_table(final, pipeline.info.interval_seconds))
    engine.close()
    return EXIT_OK
