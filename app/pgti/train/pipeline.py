"""The data side of a run, as one rank sees it.

`build_pipeline(cfg, world)`:
1. rank 0 opens and validates the dataset; its metadata is broadcast (other ranks never
   touch the file in the default "bcast" mode);
2. the raw signals go into one node-shared array per node (`pgti.dist.load`): the whole
   series ("replicated") or only this node's ranks' time span ("partitioned");
3. the chronological split of window starts and the train-only scaler (fit once on rank 0,
   broadcast: every rank normalizes identically);
4. per split, an `IndexBatcher` over this rank's window starts (training starts change every
   epoch: `train_starts(epoch)`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pgti.config import Config
from pgti.data.format import DatasetInfo, open_dataset
from pgti.data.scaler import Scaler
from pgti.data.windows import IndexBatcher, WindowSpec, make_splits
from pgti.dist import partition
from pgti.dist.load import load_signals, node_time_span
from pgti.errors import UserError


def channel_indices(names: list[str], info: DatasetInfo, key: str, default: list[int] | None) -> list[int] | None:
    if not names:
        return default
    missing = [n for n in names if n not in info.channels]
    if missing:
        raise UserError(f"{info.path}: {key} {missing} not among the dataset's channels {info.channels}; "
                        f"fix {key} in the config")
    return [info.channels.index(n) for n in names]


def window_spec(cfg: Config, info: DatasetInfo) -> WindowSpec:
    d = cfg.data
    inputs = channel_indices(d.input_channels, info, "data.input_channels", None)
    targets = channel_indices(d.target_channels, info, "data.target_channels", [0])
    return WindowSpec(
        input_steps=d.input_steps, output_steps=d.output_steps,
        input_channels=tuple(inputs) if inputs is not None else None, target_channels=tuple(targets),
        time_of_day=d.time_of_day, day_of_week=d.day_of_week,
    )


def open_on_rank0(world, path: str) -> DatasetInfo:
    """Rank 0 validates the file; every rank gets the metadata or the same one-line error."""
    info, error = None, None
    if world.rank == 0:
        try:
            info = open_dataset(path)
        except UserError as exc:
            error = str(exc)
    info, error = world.comm.bcast((info, error), root=0)
    if error:
        raise UserError(error)
    return info


@dataclass
class Pipeline:
    info: DatasetInfo
    spec: WindowSpec
    scaler: Scaler
    splits: dict[str, np.ndarray]
    shared: object  # pgti.dist.shared.SharedArray (kept alive for the run)
    span: tuple[int, int]  # [t0, t1) of the series this node holds
    cfg: Config
    world: object
    device: torch.device

    @property
    def x_channels(self) -> int:
        return self.spec.x_channels(self.info.num_channels)

    @property
    def y_channels(self) -> int:
        return len(self.spec.targets(self.info.num_channels))

    def train_starts(self, epoch: int) -> np.ndarray:
        t = self.cfg.train
        return partition.train_window_starts(
            self.splits["train"], batch_size=t.batch_size, seed=t.seed, epoch=epoch, rank=self.world.rank,
            world_size=self.world.size, shuffle=t.shuffle, drop_last=t.drop_last)

    def batcher(self, starts: np.ndarray, batch_size: int, *, train: bool) -> IndexBatcher:
        """Batches of the given absolute window starts, gathered from this node's array."""
        t0, t1 = self.span
        timestamps = self.info.timestamps[t0:t1]
        return IndexBatcher(
            self.shared.array, timestamps, np.asarray(starts, dtype=np.int64) - t0, batch_size, self.spec, self.scaler,
            shuffle=False, drop_last=False, device=self.device,
            gather_on="device" if self.device.type == "cuda" else "host",
            storage_dtype=self.cfg.data.storage_dtype,
            prefetch=self.cfg.data.prefetch and self.device.type == "cpu" and train,
        )

    def eval_batches(self, split: str, batch_size: int) -> tuple[IndexBatcher, np.ndarray]:
        starts = partition.eval_shard(self.splits[split], self.world.rank, self.world.size)
        return self.batcher(starts, batch_size, train=False), starts


def build_pipeline(cfg: Config, world, device: torch.device, scaler_state: dict | None = None) -> Pipeline:
    d = cfg.data
    info = open_on_rank0(world, d.path)
    spec = window_spec(cfg, info)
    try:
        splits = make_splits(info.num_steps, d.input_steps, d.output_steps, d.stride, tuple(d.ratios), d.split)
    except ValueError as exc:
        raise UserError(f"{info.path}: {exc}; use a longer series or shorter windows") from None
    if len(splits["train"]) < world.size * (cfg.train.batch_size if cfg.train.drop_last else 1):
        raise UserError(f"{info.path}: {len(splits['train'])} training windows cannot give every one of "
                        f"{world.size} ranks a batch of {cfg.train.batch_size}; lower train.batch_size")

    span = (0, info.num_steps)
    if d.placement == "partitioned":
        own = partition.local_block(splits["train"], world.rank, world.size)
        span = node_time_span(world, own, d.input_steps, d.output_steps)
    shared = load_signals(world, info, span[0], span[1], mode=d.load, dtype=d.storage_dtype)

    if scaler_state is not None:  # resume: the scaler the checkpoint was trained with
        scaler = Scaler.from_state_dict(scaler_state)
    else:
        state = None
        if world.rank == 0:
            # Replicated: fit from the node-shared copy (no extra I/O). Partitioned: this node
            # holds only part of the training range, so stream it from the file.
            source = shared.array if d.placement == "replicated" and d.storage_dtype == "float32" else info
            fitted = Scaler.fit(source, splits["train"], input_steps=d.input_steps, output_steps=d.output_steps,
                                mode=d.scaler, include_missing=d.scaler_include_missing,
                                missing_value=info.missing_value)
            state = fitted.state_dict()
        scaler = Scaler.from_state_dict(world.comm.bcast(state, root=0))
    return Pipeline(info, spec, scaler, splits, shared, span, cfg, world, device)
