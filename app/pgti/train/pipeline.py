"""The data side of a run, as one rank sees it.

`build_pipeline(cfg, world)`:
1. rank 0 opens and validates the dataset; its metadata is broadcast (other ranks never
   touch the file in the default "bcast" mode);
2. the raw signals go into one node-shared array per node (`pgti.distributed.load`): the whole
   series ("replicated") or only this node's ranks' time span ("partitioned");
3. the chronological split of window starts and the train-only scaler (fit once on rank 0,
   broadcast: every rank normalizes identically);
4. one `WindowGather` per node array (replicated: one for every split), built on first use
   and kept for the run: on a GPU it holds the run's one device copy of the raw array, which
   training, validation, test and predict all read. The training batcher is kept too; each
   epoch only replaces its window starts (`train_batches(epoch)`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from pgti.config import Config
from pgti.data.batcher import IndexBatcher
from pgti.data.format import DatasetInfo
from pgti.data.scaler import Scaler
from pgti.data.splits import make_splits
from pgti.data.windows import WindowGather, WindowSpec
from pgti.distributed import partition
from pgti.distributed.load import load_signals, node_time_span, open_dataset_once
from pgti.distributed.world import run_on_root
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


@dataclass
class Pipeline:
    info: DatasetInfo
    spec: WindowSpec
    scaler: Scaler
    splits: dict[str, np.ndarray]
    arrays: dict  # split -> node-shared SharedArray holding that split's steps [t0, t1) on this node
    cfg: Config
    world: object
    device: torch.device
    _gathers: dict = field(default_factory=dict, repr=False)  # id(node array) -> its WindowGather
    _train_batcher: IndexBatcher | None = field(default=None, repr=False)

    @property
    def x_channels(self) -> int:
        return self.spec.x_channels(self.info.num_channels)

    @property
    def y_channels(self) -> int:
        return len(self.spec.targets(self.info.num_channels))

    def train_starts(self, epoch: int) -> np.ndarray:
        """This rank's training window starts for `epoch`, in batch order (see distributed.partition)."""
        t = self.cfg.train
        return partition.rank_window_starts(
            self.splits["train"], self.world.rank, self.world.size, t.batch_size, seed=t.seed, epoch=epoch,
            shuffle=t.shuffle, drop_last=t.drop_last)

    def eval_starts(self, split: str) -> np.ndarray:
        """This rank's contiguous shard of a split's windows (may be empty; sums are reduced)."""
        return partition.eval_shard(self.splits[split], self.world.rank, self.world.size)

    def gather(self, split: str) -> WindowGather:
        """The gather over the node array that holds `split`, built once per array: on CUDA
        the raw array is copied to the device here, once per run (GPU-index-batching)."""
        shared = self.arrays[split]
        key = id(shared)
        if key not in self._gathers:
            t0, t1 = shared.attrs["t0"], shared.attrs["t1"]
            on_gpu = self.device.type == "cuda"
            self._gathers[key] = WindowGather(shared.tensor(), self.info.timestamps[t0:t1], self.spec, self.scaler,
                                              device=self.device if on_gpu else torch.device("cpu"))
        return self._gathers[key]

    def batcher(self, split: str, starts: np.ndarray, batch_size: int, *, prefetch: bool = False) -> IndexBatcher:
        """Batches of the given absolute window starts, gathered from this node's array."""
        local = np.asarray(starts, dtype=np.int64) - self.arrays[split].attrs["t0"]
        return IndexBatcher.over(self.gather(split), local, batch_size, device=self.device,
                                 prefetch=prefetch and self.cfg.data.prefetch and self.device.type == "cpu")

    def train_batches(self, epoch: int, start_batch: int = 0) -> IndexBatcher:
        """This rank's training batches of `epoch` from batch `start_batch` on: one batcher for
        the run (its buffers and prefetch settings), given each epoch's window starts."""
        starts = self.train_starts(epoch)
        if self._train_batcher is None:
            self._train_batcher = self.batcher("train", starts, self.cfg.train.batch_size, prefetch=True)
        else:
            self._train_batcher.set_window_starts(starts - self.arrays["train"].attrs["t0"])
        self._train_batcher.set_epoch(epoch, start_batch=start_batch)
        return self._train_batcher

    def eval_batches(self, split: str, batch_size: int) -> tuple[IndexBatcher, np.ndarray]:
        starts = self.eval_starts(split)
        return self.batcher(split, starts, batch_size), starts


WINDOW_KEYS = "data.input_steps, data.output_steps, data.stride, data.ratios, data.split"


def checked_splits(cfg: Config, info: DatasetInfo, world_size: int, for_training: bool = True) -> dict[str, np.ndarray]:
    """The split's window starts and, for training, checks that there is a validation split
    and that the training split gives every rank a batch; the errors name the dataset and the
    config keys to change."""
    d, t = cfg.data, cfg.train
    try:
        splits = make_splits(info.num_steps, d.input_steps, d.output_steps, d.stride, tuple(d.ratios), d.split)
    except (ValueError, UserError) as exc:
        raise UserError(f"{info.path}: {exc} (config: {WINDOW_KEYS})") from None
    if not for_training:
        return splits
    if len(splits["val"]) == 0:
        raise UserError(f"{info.path}: the validation split is empty (data.ratios = {d.ratios}): training needs "
                        "one (it picks the best model and stops early); give it a fraction > 0")
    try:
        partition.rank_window_starts(splits["train"], 0, world_size, t.batch_size, seed=t.seed, epoch=0,
                                     shuffle=t.shuffle, drop_last=t.drop_last)
    except UserError as exc:
        raise UserError(f"{info.path}: {exc} (config: train.batch_size = {t.batch_size}, train.drop_last = "
                        f"{str(t.drop_last).lower()}, train.shuffle = {t.shuffle!r})") from None
    return splits


def build_pipeline(cfg: Config, world, device: torch.device, scaler_state: dict | None = None, *,
                   for_training: bool = True, before_load=None) -> Pipeline:
    """`before_load(info, splits)`: checks to run (on every rank) before the signals are read,
    e.g. that a checkpoint fits this dataset; minutes of loading at PeMS scale are not spent on
    a run that is refused anyway."""
    d = cfg.data
    info = open_dataset_once(world, d.path)
    if world.rank == 0 and not info.checksummed:
        from pgti.data.verify import checksum_note

        logging.getLogger("pgti.train").warning("note: %s", checksum_note(info))
    spec = window_spec(cfg, info)
    splits = run_on_root(world, checked_splits, cfg, info, world.size, for_training)  # a mistake: one message
    if before_load is not None:
        before_load(info, splits)

    if d.placement == "replicated":  # one array of the whole series per node, shared by all splits
        whole = load_signals(world, info, 0, info.num_steps, mode=d.load, dtype=d.storage_dtype)
        arrays = {split: whole for split in splits}
    else:
        # Partitioned: per split, only the steps this node's ranks touch (their windows plus the
        # Tin+Tout-1 halo), so node memory falls as nodes are added.
        arrays = {}
        for split in ("train", "val", "test"):
            if split == "train":
                lo, hi = partition.block_bounds(len(splits["train"]), world.size, world.rank)
                mine = splits["train"][lo:hi]
            else:
                mine = partition.eval_shard(splits[split], world.rank, world.size)
            t0, t1 = node_time_span(world, mine, d.input_steps, d.output_steps)
            arrays[split] = load_signals(world, info, t0, t1, mode=d.load, dtype=d.storage_dtype)

    if scaler_state is not None:  # resume: the scaler the checkpoint was trained with
        scaler = Scaler.from_state_dict(scaler_state)
    else:
        state = None
        if world.rank == 0:
            # Replicated: fit from the node-shared copy (no extra I/O). Partitioned: this node
            # holds only part of the training range, so stream it from the file.
            source = arrays["train"].array if d.placement == "replicated" and d.storage_dtype == "float32" else info
            fitted = Scaler.fit(source, splits["train"], input_steps=d.input_steps, output_steps=d.output_steps,
                                mode=d.scaler, include_missing=d.scaler_include_missing,
                                missing_value=info.missing_value)
            state = fitted.state_dict()
        scaler = Scaler.from_state_dict(world.comm.bcast(state, root=0))
    return Pipeline(info, spec, scaler, splits, arrays, cfg, world, device)
