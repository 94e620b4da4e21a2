"""What the peers do, with the same split, scaler and features: the baselines of tests and benchmarks.

Named as `pgti bench loader` names them:

- materialized: DCRNN's `generate_training_data.py` and PyTorch Geometric Temporal's
  `StaticGraphTemporalSignal`. The whole series' features are prepared (normalized, calendar
  channels appended), then every window is copied out: x [S, Tin, N, Cx], y [S, Tout, N, Cy].
  Built here in float32 with one vectorized copy per array, the cheapest way there is: DCRNN's
  script stacks a Python list of float64 windows, so its real peak is about four times this.
- pgt_i: PGT-I's `IndexDataset` as its SC'25 artifacts ship it. On the CPU it keeps
  one float64 numpy array [T, N, Cin + K] (the readings, `np.expand_dims(df.values, -1)`, then
  the time-of-day channel tiled over every sensor), standardized in place in float64; sample i
  is `torch.from_numpy` of two slices of it, x = data[s : s+Tin] and y = data[s+Tin : s+Tin+Tout],
  BOTH with every feature, and the default `DataLoader` collate stacks B of them (float64). The
  training loop casts afterwards. Its GPU path keeps the same array as a float32 device tensor
  and returns tensor slices.
- per_sample: a kinder per-sample loader (pgti's features, not PGT-I's code): the same `__getitem__` + default
  collate over float32 prepared series with exactly index-batching's features (x: inputs +
  calendar, y: raw targets), so it moves no extra bytes.

materialized and per_sample produce, sample for sample, exactly the tensors `IndexBatcher`
gathers (the tests check `torch.equal`); pgt_i equals them after the cast to float32
and the choice of y's channels, up to float64-vs-float32 rounding of the standardization.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pgti.data.batcher import epoch_order
from pgti.data.windows import (
    _EPOCH_WEEKDAY,
    DAY_SECONDS,
    Batch,
    WindowSpec,
    as_signal_tensor,
    calendar_features,
    window_view,
)


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
    return (scaler.transform(selected, channels) if scaler is not None else selected).float()


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
    """Per-sample loading over prepared series: sample i is the window starting at
    window_starts[i], returned as views (x [Tin, N, Cx], y [Tout, N, Cy]) of `inputs` and
    `targets` (from `prepare_series` for the kind float32 baseline, or x and y both of the one
    PGT-I array from `prepare_series_pgt`)."""

    def __init__(self, inputs, targets, window_starts, spec: WindowSpec = WindowSpec()):
        self.inputs, self.targets = inputs, targets
        self.window_starts = np.asarray(window_starts, dtype=np.int64)
        self.input_steps, self.window_steps = spec.input_steps, spec.window_steps
        self.from_numpy = isinstance(inputs, np.ndarray)

    def __len__(self) -> int:
        return len(self.window_starts)

    def __getitem__(self, i: int):
        start = int(self.window_starts[i])
        middle = start + self.input_steps
        x, y = self.inputs[start:middle], self.targets[middle:start + self.window_steps]
        if self.from_numpy:  # PGT-I: torch.from_numpy(data[idx:idx+h]), torch.from_numpy(data[idx+h:idx+2h])
            return torch.from_numpy(x), torch.from_numpy(y)
        return x, y


def prepare_series_pgt(signals, timestamps, spec: WindowSpec = WindowSpec(), scaler=None, device=None):
    """PGT-I's prepared series: one array [T, N, Cin + K] holding the input channels, then the
    calendar channels tiled over every sensor, the data channels standardized in place in
    float64 with the scaler's (DCRNN, window-multiplicity) mean and std when
    spec.normalize_inputs. CPU: a float64 numpy array (what `IndexDataset` slices); a CUDA
    `device`: the same values as a float32 tensor there (PGT-I's GPU path)."""
    raw = np.asarray(signals.cpu() if isinstance(signals, torch.Tensor) else signals)
    channels = spec.inputs(raw.shape[-1])
    num_steps, num_nodes = raw.shape[:2]
    data = raw[..., channels].astype(np.float64)  # pandas' df.values is float64; expand_dims(-1) for one channel
    features = [data]
    seconds = np.asarray(timestamps, dtype=np.int64) + int(spec.utc_offset_seconds)
    calendar = []
    if spec.time_of_day:  # DCRNN/PGT-I: (index - index.astype("datetime64[D]")) / timedelta64(1, "D")
        calendar.append((seconds % DAY_SECONDS) / DAY_SECONDS)
    if spec.day_of_week:
        calendar.append(((seconds // DAY_SECONDS + _EPOCH_WEEKDAY) % 7).astype(np.float64))
    for time_ind in calendar:  # np.tile(time_ind, [1, N, 1]).transpose((2, 1, 0)): [T, N, 1] float64
        features.append(np.tile(time_ind, [1, num_nodes, 1]).transpose((2, 1, 0)))
    data = np.concatenate(features, axis=-1)
    if scaler is not None and spec.normalize_inputs:
        for k, c in enumerate(channels):  # in place, float64
            data[..., k] = (data[..., k] - scaler.mean[c]) / scaler.std[c]
    if device is not None and torch.device(device).type != "cpu":
        return torch.from_numpy(data).to(device=device, dtype=torch.float32)
    return data


def per_sample_loader(dataset: PerSampleWindows, batch_size: int, *, shuffle: bool = False, seed: int = 0,
                      epoch: int = 0, drop_last: bool = False) -> DataLoader:
    """The default `DataLoader` over `dataset` (one `__getitem__` per sample, default collate),
    in `IndexBatcher`'s order for (seed, epoch)."""
    order = epoch_order(len(dataset), seed, epoch, shuffle).tolist()
    return DataLoader(dataset, batch_size=batch_size, sampler=order, drop_last=drop_last, num_workers=0)
