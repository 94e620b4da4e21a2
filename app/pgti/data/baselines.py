"""What the peers do, with the same split, scaler and features: the baselines of tests and benchmarks.

- materialized: DCRNN's `generate_training_data.py` and PyTorch Geometric Temporal's
  `StaticGraphTemporalSignal`. The whole series' features are prepared (normalized, calendar
  channels appended), then every window is copied out: x [S, Tin, N, Cx], y [S, Tout, N, Cy].
  Built here in float32 with one vectorized copy per array, the cheapest way there is: DCRNN's
  script stacks a Python list of float64 windows, so its real peak is about four times this.
- per_sample: PGT-I's `IndexDataset`. The prepared series is kept once; `__getitem__` slices
  one window (two views) and the default `DataLoader` collate stacks B of them, one Python
  call per sample. CPU, or GPU with the prepared series on the device.

Both produce, sample for sample, exactly the tensors `IndexBatcher` gathers (the tests check
`torch.equal`), so benchmarks compare like with like.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pgti.data.windows import Batch, WindowSpec, as_signal_tensor, calendar_features, epoch_order, window_view


def prepare_series(signals, timestamps, spec: WindowSpec = WindowSpec(), scaler=None, device=None):
    """The classic preprocessing of the whole series: (inputs [T, N, Cx], targets [T, N, Cy]),
    float32 on `device`. inputs = selected channels (normalized if spec.normalize_inputs and a
    scaler) + calendar channels; targets = target channels (normalized if spec.normalize_targets)."""
    raw = as_signal_tensor(signals, device=device)
    num_steps, num_nodes, num_channels = raw.shape
    input_channels, target_channels = spec.inputs(num_channels), spec.targets(num_channels)
    inputs = torch.empty((num_steps, num_nodes, spec.x_channels(num_channels)), dtype=torch.float32, device=raw.device)
    inputs[..., :len(input_channels)] = _features(raw, input_channels, scaler if spec.normalize_inputs else None)
    if spec.calendar_channels:
        calendar = torch.from_numpy(calendar_features(timestamps, spec)).to(raw.device)
        inputs[..., len(input_channels):] = calendar[:, None, :]
    targets = _features(raw, target_channels, scaler if spec.normalize_targets else None)
    return inputs, targets.contiguous()


def _features(raw: torch.Tensor, channels: list[int], scaler) -> torch.Tensor:
    selected = raw[..., channels]  # advanced indexing: a copy, float32 below
    return scaler.transform(selected, channels) if scaler is not None else selected.float()


def materialize_windows(signals, timestamps, window_starts, spec: WindowSpec = WindowSpec(), scaler=None):
    """Every window at `window_starts` [S] copied out: (x [S, Tin, N, Cx], y [S, Tout, N, Cy]) float32."""
    inputs, targets = prepare_series(signals, timestamps, spec, scaler)
    starts = torch.as_tensor(np.asarray(window_starts, dtype=np.int64))
    x = window_view(inputs, spec.input_steps).index_select(0, starts)
    y = window_view(targets[spec.input_steps:], spec.output_steps).index_select(0, starts)
    return x, y


class MaterializedBatches:
    """Batches of materialized windows in the same order as `IndexBatcher` (same (seed, epoch)).

    x [S, Tin, N, Cx], y [S, Tout, N, Cy] and window_starts [S] are aligned row by row.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, window_starts, batch_size: int, *, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, device=None):
        self.x, self.y = x, y
        self.window_starts = torch.as_tensor(np.asarray(window_starts, dtype=np.int64))
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.device = torch.device(device) if device is not None else x.device
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        count = len(self.window_starts)
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        order = epoch_order(len(self.window_starts), self.seed, self.epoch, self.shuffle)
        for k in range(len(self)):
            rows = order[k * self.batch_size:(k + 1) * self.batch_size]
            yield Batch(self.x.index_select(0, rows).to(self.device), self.y.index_select(0, rows).to(self.device),
                        self.window_starts[rows].to(self.device))


class PerSampleWindows(Dataset):
    """PGT-I's `IndexDataset`: sample i is the window starting at window_starts[i], sliced from
    the prepared series (`prepare_series`), returned as views (x [Tin, N, Cx], y [Tout, N, Cy])."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor, window_starts, spec: WindowSpec = WindowSpec()):
        self.inputs, self.targets = inputs, targets
        self.window_starts = np.asarray(window_starts, dtype=np.int64)
        self.input_steps, self.window_steps = spec.input_steps, spec.window_steps

    def __len__(self) -> int:
        return len(self.window_starts)

    def __getitem__(self, i: int):
        start = int(self.window_starts[i])
        middle = start + self.input_steps
        return self.inputs[start:middle], self.targets[middle:start + self.window_steps]


def per_sample_loader(dataset: PerSampleWindows, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                      epoch: int = 0, drop_last: bool = False) -> DataLoader:
    """The default `DataLoader` over `dataset` (one `__getitem__` per sample, default collate),
    in `IndexBatcher`'s order for (seed, epoch)."""
    order = epoch_order(len(dataset), seed, epoch, shuffle).tolist()
    return DataLoader(dataset, batch_size=batch_size, sampler=order, drop_last=drop_last, num_workers=0)
