"""The training loop, in one place (`train`, read top to bottom).

    for epoch:                      # window order from (seed, epoch): any rank, any resume
        for batch of this rank:     # gathered from the node-shared raw array
            train_step              # forward, masked loss in data units, backward, allreduce, clip, step
            agree_on_events         # stop (signal / walltime) and periodic checkpoints: one tiny allreduce
        end_epoch                   # validate (allreduced sums), log, plot, best model, early stopping, checkpoint

A stop request (SIGTERM/SIGUSR1/SIGINT or the walltime) ends the step, checkpoints and
returns EXIT_RESUBMIT. Resuming restores model, optimizer, scheduler, scaler, every rank's RNG
states and the position inside the epoch (`TrainState`), so a killed-and-resumed run ends
bit-identical to an uninterrupted one (same world size, same device type).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import signal
import time
from dataclasses import dataclass

import numpy as np
import torch

from pgti import __version__
from pgti.allocator import release_free_heap
from pgti.config import Config, config_hash, parse_duration, to_dict, to_toml
from pgti.distributed.engine import make_engine
from pgti.distributed.world import run_on_root
from pgti.errors import EXIT_FAILURE, EXIT_OK, EXIT_RESUBMIT, UserError
from pgti.train.checkpoint import RESUME_KEYS, CheckpointManager, check_config_hash, find_resumable, load_checkpoint
from pgti.train.evaluate import evaluate_split
from pgti.train.metrics import format_table, training_loss
from pgti.train.monitor import Monitor
from pgti.train.pipeline import Pipeline, build_pipeline
from pgti.train.plots import plot_curves
from pgti.train.progress import Progress
from pgti.train.rundir import RunDir, peak_device_bytes, peak_rss_bytes
from pgti.train.session import (
    check_dataset,
    compiled_for_run,
    dataset_identity,
    load_weights,
    model_for_run,
    resolve_device,
)
from pgti.train.signals import Deadline, StopRequest
from pgti.train.state import TrainState, rng_state, seed_everything, set_rng_state
from pgti.train.step import StepParts, make_optimizer, make_scheduler, train_step

log = logging.getLogger("pgti.train")


@dataclass
class Run:
    """What the loop's functions share: the config, the data, the model and its step, the
    checkpoints, the clock. `model` is the bare module (evaluation and checkpoints use it)."""

    cfg: Config
    world: object
    run_dir: RunDir
    pipeline: Pipeline
    model: torch.nn.Module
    parts: StepParts
    manager: CheckpointManager
    deadline: Deadline
    config_hash: str
    last_checkpoint: float
    monitor: Monitor | None = None


def train(cfg: Config, run_dir: RunDir, world, resume: str | None = None, ignore_config: bool = False,
          stop: StopRequest | None = None) -> int:
    """Train (or resume) the run in `run_dir`; returns EXIT_OK, EXIT_RESUBMIT or (diverged) EXIT_FAILURE.

    `stop`: the caller's installed StopRequest (installed at process start, so a signal that
    arrives while the data loads still ends in a checkpoint after the first step)."""
    started, t = time.time(), cfg.train
    device = resolve_device(cfg, world)
    chash = config_hash(cfg)
    manager = CheckpointManager(run_dir.checkpoints, cfg.checkpoint.keep_last)
    # rank 0 finds and reads the checkpoint once and broadcasts it (one file read per job);
    # an unreadable file, a foreign config: one message, every rank ends
    found, ckpt = run_on_root(world, resume_point, run_dir, manager, resume, chash, ignore_config, to_dict(cfg))
    if found:
        log.info("resuming from %s (epoch %d, step %d in epoch, global step %d)", found, ckpt["epoch"],
                 ckpt["batch_in_epoch"], ckpt["global_step"])
    pipeline = build_pipeline(cfg, world, device, scaler_state=ckpt["scaler"] if ckpt else None,
                              before_load=(lambda info, _: check_dataset(ckpt, info, found, world)) if ckpt else None)
    seed_everything(t.seed)  # same initial weights on every rank (and rank 0's are broadcast anyway)
    model = model_for_run(cfg, pipeline).to(device)
    if ckpt:
        load_weights(model, ckpt["model"], found, world)
    state = TrainState.from_checkpoint(ckpt, world.rank)
    engine = make_engine(cfg.dist, world, device)
    to_train = compiled_for_run(cfg, pipeline, world, model, device, state.global_step) if cfg.model.compile else model
    train_model, optimizer = engine.prepare(to_train, make_optimizer(cfg, model), ckpt["optimizer"] if ckpt else None)
    steps_per_epoch = len(pipeline.train_starts(0)) // t.batch_size  # equal on every rank, every epoch
    scheduler = make_scheduler(cfg, optimizer, steps_per_epoch, world.size, ckpt["scheduler"] if ckpt else None)
    restore_rng(t.seed, world, ckpt)
    parts = StepParts(train_model, optimizer, engine, pipeline.scaler, pipeline.spec.targets(pipeline.info.num_channels),
                      pipeline.info.missing_value, training_loss(t.loss), t.grad_clip, scheduler,
                      autocast=t.bf16 and device.type == "cuda")
    limit = parse_duration(t.time_limit) if t.time_limit else None
    r = Run(cfg, world, run_dir, pipeline, model, parts, manager, Deadline.from_environment(started, limit), chash,
            last_checkpoint=time.time())
    if world.rank == 0:
        start_run_dir(r, state, resumed=ckpt is not None, engine=engine.name, steps_per_epoch=steps_per_epoch)
    r.monitor = Monitor(run_dir.path, cfg, world, steps_per_epoch=steps_per_epoch, state=state,
                        resumed=ckpt is not None, config_text=to_toml(cfg))
    try:
        status = train_epochs(r, state, stop)
    except BaseException as exc:  # (the engine is left as it is: the error path aborts the job)
        r.monitor.finish("failed", None, f"{type(exc).__name__}: {exc}"[:300], state)
        raise
    engine.close()
    return status


def train_epochs(r: Run, state: TrainState, stop: StopRequest | None) -> int:
    """The epochs left to train, and how they ended (EXIT_OK, EXIT_RESUBMIT, EXIT_FAILURE)."""
    cfg, t, world, pipeline, parts = r.cfg, r.cfg.train, r.world, r.pipeline, r.parts
    train_model = parts.model
    nonfinite_steps = 0
    with contextlib.nullcontext(stop) if stop is not None else StopRequest() as stop:
        while not state.finished(t):
            batches = pipeline.train_batches(state.epoch, start_batch=state.batch_in_epoch)
            progress = Progress(cfg, world, len(batches), state.batch_in_epoch, state.epoch, t.batch_size)
            train_model.train()
            epoch_began, steps = time.perf_counter(), 0
            for x, y, _ in batches:
                step_began = time.perf_counter()
                loss = train_step(parts, x, y, state.global_step).detach().item()
                state.record_step(loss)
                steps += 1
                progress.step(state.batch_in_epoch - 1, loss)
                seconds = time.perf_counter() - step_began
                r.deadline.record_step(seconds)
                r.monitor.step(state, loss, parts.scheduler.get_last_lr()[0], seconds)
                stop_reason, checkpoint_due, nonfinite = agree_on_events(r, stop, state.global_step,
                                                                         math.isfinite(loss))
                if nonfinite:
                    nonfinite_steps += 1
                    if diverged(r, state, nonfinite_steps):
                        progress.close()
                        r.monitor.finish("diverged", EXIT_FAILURE, "non-finite loss or gradient norm", state)
                        return EXIT_FAILURE
                at_limit = bool(t.max_steps and state.global_step >= t.max_steps)
                stop.committed = bool(stop_reason)  # a second Ctrl-C must not break the checkpoint now
                if stop_reason or (checkpoint_due and state.batch_in_epoch < len(batches) and not at_limit):
                    save_checkpoint(r, state)  # (at an epoch's end or the step limit, end_epoch's follows)
                if stop_reason:
                    progress.close()
                    if world.rank == 0:
                        log.warning("stopping on %s at global step %d: checkpointed; resubmit with --resume auto "
                                    "(exit status %d)", stop_reason, state.global_step, EXIT_RESUBMIT)
                    r.monitor.finish("stopped", EXIT_RESUBMIT, stop_reason, state)
                    return EXIT_RESUBMIT
                if at_limit:
                    break
            progress.close()
            end_epoch(r, state, finished=state.batch_in_epoch >= len(batches), steps=steps,
                      epoch_time=time.perf_counter() - epoch_began)

    check_ranks_agree(world, r.model)
    if world.rank == 0:
        rows = r.run_dir.read_metrics()
        final = rows[-1].get("val") if rows else None
        if final:
            log.info("final val metrics:\n%s", format_table(final, pipeline.info.interval_seconds))
    early, limit = state.early_stopped(t), bool(t.max_steps and state.global_step >= t.max_steps)
    r.monitor.finish("early-stopped" if early else "finished", EXIT_OK, "train.max_steps reached"
                     if limit and not early and state.epoch < t.epochs else "", state)
    return EXIT_OK


def resume_point(run_dir: RunDir, manager: CheckpointManager, resume: str | None, chash: str, ignore_config: bool,
                 config: dict):
    """(path, checkpoint) to resume from, or (None, None): `resume` is None, "auto" (the newest
    checkpoint of this config that loads) or a file. Rank 0 only."""
    if not resume:
        return None, None
    if resume != "auto":
        if not os.path.isfile(resume):
            raise UserError(f"--resume {resume}: no such checkpoint; use --resume auto or a file in "
                            f"{run_dir.checkpoints}")
        loaded = load_checkpoint(resume, required=RESUME_KEYS)
        check_config_hash(resume, loaded, chash, ignore_config, config)
        return resume, loaded
    hit = find_resumable(manager, chash, ignore_config, config)
    return (str(hit[0]), hit[1]) if hit else (None, None)


def restore_rng(seed: int, world, ckpt: dict | None) -> None:
    """Per-rank randomness (scheduled sampling): seeded per rank, or a checkpoint's states."""
    seed_everything(seed + 1000 * world.rank + 1)
    if ckpt and len(ckpt["rng"]) == world.size:
        set_rng_state(ckpt["rng"][world.rank])
    elif ckpt and world.rank == 0:
        log.warning("resuming with %d ranks from a %d-rank checkpoint: the run continues, but not bit-exactly",
                    world.size, len(ckpt["rng"]))


def start_run_dir(r: Run, state: TrainState, *, resumed: bool, engine: str, steps_per_epoch: int) -> None:
    """Rank 0: the run directory and its config; metrics rows that a resume trains again go;
    what is about to run, in the log."""
    cfg, t, world = r.cfg, r.cfg.train, r.world
    r.run_dir.create(cfg)
    if not resumed:
        r.run_dir.truncate_metrics(before_epoch=0)  # rows of an earlier start that never checkpointed
    elif not state.finished(t):
        # the epoch in progress is trained again from its checkpoint: its row (a partial one,
        # from a stop at max_steps) is rewritten when it ends; a finished run keeps its rows
        r.run_dir.truncate_metrics(before_epoch=state.epoch)
    log.info("%s: %s parameters; %d ranks on %d node(s); %d steps/epoch of %d x %d samples; engine %s on %s",
             cfg.model.name, f"{sum(p.numel() for p in r.model.parameters()):,}", world.size, world.num_nodes,
             steps_per_epoch, world.size, t.batch_size, engine, r.pipeline.device)
    if resumed and state.finished(t):
        log.info("nothing left to train (epoch %d of %d, global step %d, max_steps %d, %d epochs without "
                 "improvement, patience %d): raise train.epochs or train.max_steps to continue", state.epoch,
                 t.epochs, state.global_step, t.max_steps, state.epochs_without_improvement, t.patience)


def agree_on_events(r: Run, stop: StopRequest, global_step: int, finite: bool = True) -> tuple[str | None, bool, bool]:
    """Every rank's view of this step's events, agreed in one tiny allreduce (MAX):
    (stop reason: a signal's name, "walltime" or None; whether a periodic checkpoint is due;
    whether any rank's loss or the averaged gradient norm was not finite)."""
    from mpi4py import MPI

    every = r.cfg.checkpoint.every_minutes
    signum = int(getattr(signal, stop.reason)) if stop.reason else 0  # which signal, on any rank
    flags = np.array([signum, r.deadline.expired(), bool(every) and time.time() - r.last_checkpoint >= every * 60,
                      not finite], dtype=np.int32)
    r.world.comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MAX)
    reason = signal.Signals(int(flags[0])).name if flags[0] else "walltime" if flags[1] else None
    every_steps = r.cfg.checkpoint.every_steps
    return reason, bool(flags[2]) or bool(every_steps and global_step % every_steps == 0), bool(flags[3])


def diverged(r: Run, state: TrainState, count: int) -> bool:
    """A step with a non-finite loss or gradient norm (agreed by every rank; its update was not
    applied when the gradients were at fault). Up to `train.skip_nonfinite` are skipped with a
    warning; then the run stops (True) with one message naming the step and the last good
    checkpoint, and nothing more is written: every checkpoint and best.pt stay finite."""
    t = r.cfg.train
    where = f"epoch {state.epoch + 1} step {state.batch_in_epoch} (global step {state.global_step})"
    if count <= t.skip_nonfinite:
        if r.world.rank == 0:
            log.warning("non-finite loss or gradient norm at %s: step skipped (%d of train.skip_nonfinite = %d)",
                        where, count, t.skip_nonfinite)
        return False
    if r.world.rank == 0:
        latest = r.manager.latest()
        log.error("training diverged: non-finite loss or gradient norm at %s; stopping (exit %d) without saving. "
                  "The last good checkpoint is %s. Lower train.lr or raise train.grad_clip and resume with --resume "
                  "auto, or set train.skip_nonfinite to skip such steps", where, EXIT_FAILURE,
                  latest if latest is not None else "none (no checkpoint yet)")
    return True


def end_epoch(r: Run, state: TrainState, *, finished: bool, steps: int, epoch_time: float) -> None:
    """After an epoch (or a stop at max_steps inside one, `finished` False): the epoch's
    metrics row (allreduced loss, validation, peak memory), best model and patience, plots,
    and a checkpoint. Collective."""
    from mpi4py import MPI

    t, world = r.cfg.train, r.world
    totals = np.array([state.loss_sum, state.loss_count], dtype=np.float64)
    world.comm.Allreduce(MPI.IN_PLACE, totals, op=MPI.SUM)
    row = {"epoch": state.epoch, "global_step": state.global_step, "train_loss": totals[0] / max(1.0, totals[1]),
           "epoch_time_s": epoch_time, "samples_per_s": steps * t.batch_size * world.size / max(epoch_time, 1e-9),
           "lr": r.parts.scheduler.get_last_lr()[0]}
    improved = False
    if (state.epoch + 1) % t.validate_every == 0 or not finished or state.epoch + 1 == t.epochs:
        release_free_heap()
        row["val"] = evaluate_split(r.pipeline, r.model, "val", t.eval_batch_size or t.batch_size, bf16=t.bf16)
        # A stop at max_steps mid-epoch validates for its row only: best, patience and best.pt
        # follow epoch ends, so a resume that finishes the epoch (or evaluate, which falls back
        # to the latest checkpoint) sees an uninterrupted run's state.
        if finished:
            improved = state.record_validation(row["val"]["overall"]["mae"])
        if state.best_val_mae < math.inf:
            row["best_val_mae"] = state.best_val_mae
    device = r.pipeline.device
    peaks = np.array([peak_rss_bytes(), peak_device_bytes(device)], dtype=np.int64)
    node_rss = world.node_comm.allreduce(int(peaks[0]))
    world.comm.Allreduce(MPI.IN_PLACE, peaks, op=MPI.MAX)
    row.update(peak_rss_bytes_max_rank=int(peaks[0]), peak_rss_bytes_node_sum=node_rss,
               peak_device_bytes=int(peaks[1]))
    if finished:
        state.next_epoch()
    # else (stopped at max_steps): the checkpoint keeps the partial sums, so a resume with a
    # higher max_steps ends the epoch with the loss of all its steps
    if world.rank == 0:
        r.run_dir.append_metrics(row)
        r.monitor.epoch(state, row)
        if r.cfg.log.plots:
            plot_curves(r.run_dir.read_metrics(), r.run_dir.plots)
        val = row.get("val")
        log.info("epoch %d: train loss %.4f, val MAE %s, %.1fs, %.0f samples/s", row["epoch"] + 1, row["train_loss"],
                 f"{val['overall']['mae']:.4f}" if val else "-", epoch_time, row["samples_per_s"])
    if improved:
        best = snapshot(r, state)
        if world.rank == 0:
            r.manager.save_best(best)
    save_checkpoint(r, state)
    if state.early_stopped(t) and world.rank == 0:
        log.info("early stopping: no val improvement for %d epochs", state.epochs_without_improvement)


def snapshot(r: Run, state: TrainState) -> dict:
    """Everything a resume needs (collective: every rank calls it; rank 0 gets the result)."""
    rngs = r.world.comm.gather(rng_state(), root=0)
    p = r.parts
    return {"model": r.model.state_dict(), "optimizer": p.optimizer.state_dict(), "scheduler": p.scheduler.state_dict(),
            "scaler": r.pipeline.scaler.state_dict(), **state.checkpoint_fields(r.world.comm), "rng": rngs,
            "config_hash": r.config_hash, "config": to_dict(r.cfg), "dataset": dataset_identity(r.pipeline.info),
            "world_size": r.world.size, "versions": {"pgti": __version__, "torch": torch.__version__}}


def save_checkpoint(r: Run, state: TrainState) -> None:
    """A step checkpoint, in place before any rank goes on (collective)."""
    began = time.perf_counter()
    checkpoint = snapshot(r, state)
    if r.world.rank == 0:
        path = r.manager.save(checkpoint, state.global_step)
        log.info("checkpoint %s", path.name)
        if r.monitor is not None:
            r.monitor.checkpointed(state)
    r.world.comm.Barrier()  # nobody exits before the file is in place
    r.deadline.record_checkpoint(time.perf_counter() - began)
    r.last_checkpoint = time.time()


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
