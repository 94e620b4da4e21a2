"""Per-channel standard scaler, fit on the training windows only, applied to gathered batches.

Modes (statistics per raw channel c, pooled over sensors):
- "dcrnn": exactly DCRNN's `StandardScaler(mean=x_train[..., c].mean(), std=x_train[..., c].std())`
  over the stacked training *input* windows x_train, numpy's default ddof=0. A time step is
  counted as many times as it appears in those windows: that multiplicity is computed from the
  window starts (`step_multiplicity`), so no window is ever built.
- "range": plain mean/std over the time steps the training windows cover (inputs and targets),
  each step counted once.

Missing readings (values equal to `missing_value`, 0.0 for PeMS) are counted by default in
"dcrnn" mode, because DCRNN counts them (that is what reproduces its numbers), and left out by
default in "range" mode (the statistics of the real readings). `include_missing` overrides.
A channel whose std is 0 gets std 1 (so transform never divides by zero).

The fit streams over time blocks: peak extra memory is a few float64 blocks of ~256K values,
never a float64 copy of the data. Blocks are combined with Chan et al.'s pairwise update of
(weight, mean, M2), which is as accurate as numpy's two-pass mean/std.

The raw data stays raw; `transform` normalizes a gathered batch (a new tensor, or `out=`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from pgti.data.splits import step_multiplicity

SCALER_MODES = ("dcrnn", "range")
_STATE_VERSION = 1


@dataclass
class Scaler:
    """mean, std: float64 `[C]` per raw channel, in the data's units (e.g. mph)."""

    mean: np.ndarray
    std: np.ndarray
    mode: str = "dcrnn"
    include_missing: bool = True
    missing_value: float = 0.0
    count: np.ndarray | None = None  # float64 [C]: weighted number of values each channel's fit used
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.std = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if self.mean.shape != self.std.shape:
            raise ValueError(f"mean {self.mean.shape} and std {self.std.shape} differ")
        if self.mode not in SCALER_MODES:
            raise ValueError(f"scaler mode {self.mode!r} is not one of {', '.join(SCALER_MODES)}")

    @property
    def num_channels(self) -> int:
        return int(self.mean.shape[0])

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, signals, train_starts, *, input_steps: int = 12, output_steps: int = 12, mode: str = "dcrnn",
            include_missing: bool | None = None, missing_value: float | None = None,
            block_values: int = 1 << 18) -> "Scaler":
        """Fit on the training windows starting at `train_starts` (int64 steps).

        `signals`: the raw `[T, N, C]` array (numpy, torch on any device, read-only is fine) or
        a `DatasetInfo`/path, which is streamed from the file. `missing_value` defaults to the
        dataset's (0.0 for arrays). `block_values` bounds the float64 working set per block.
        """
        from pgti.data.format import DatasetInfo, open_dataset, read_signals

        if mode not in SCALER_MODES:
            raise ValueError(f"scaler mode {mode!r} is not one of {', '.join(SCALER_MODES)}")
        if isinstance(signals, (str, os.PathLike)):
            signals = open_dataset(signals)
        from_file = isinstance(signals, DatasetInfo)
        if from_file:
            num_steps, num_nodes, num_channels = signals.shape
            if missing_value is None:
                missing_value = signals.missing_value
        else:
            num_steps, num_nodes, num_channels = signals.shape
        missing_value = 0.0 if missing_value is None else float(missing_value)
        if include_missing is None:
            include_missing = mode == "dcrnn"

        weights = _step_weights(np.asarray(train_starts, dtype=np.int64), num_steps, input_steps, output_steps, mode)
        used = np.flatnonzero(weights)
        if used.size == 0:
            raise ValueError("cannot fit a scaler without training windows")
        stats = _RunningStats(num_channels)
        block_steps = max(1, block_values // max(1, num_nodes * num_channels))
        for t0 in range(int(used[0]), int(used[-1]) + 1, block_steps):
            t1 = min(t0 + block_steps, int(used[-1]) + 1)
            block = read_signals(signals, t0, t1) if from_file else _host_block(signals, t0, t1)
            stats.add(block, weights[t0:t1], None if include_missing else missing_value)
        if np.any(stats.weight == 0):
            empty = int(np.flatnonzero(stats.weight == 0)[0])
            raise ValueError(f"channel {empty} has no training values that are not missing; "
                             "cannot normalize it")
        std = np.sqrt(stats.m2 / stats.weight)
        std[std == 0] = 1.0
        return cls(stats.mean, std, mode, bool(include_missing), missing_value, stats.weight.copy())

    # ------------------------------------------------------------------ applying

    def transform(self, x: torch.Tensor, channels=None, out: torch.Tensor | None = None) -> torch.Tensor:
        """(x - mean) * (1 / std) over the last dim of `x [..., len(channels)]` (any float dtype,
        any device); `channels` are the raw channel indices x holds (None = all C). Returns
        float32 (in `out` when given; `out` may be `x` itself). Multiplying by the float32
        reciprocal is within one float32 rounding of dividing, and half the cost on CPUs."""
        mean, _, inv_std = self._tensors(channels, x)
        return torch.sub(x, mean, out=out).mul_(inv_std) if out is not None else torch.sub(x, mean).mul_(inv_std)

    def inverse_transform(self, x: torch.Tensor, channels=None, out: torch.Tensor | None = None) -> torch.Tensor:
        """x * std + mean: back to the data's units. Same conventions as `transform`."""
        mean, std, _ = self._tensors(channels, x)
        return torch.mul(x, std, out=out).add_(mean) if out is not None else torch.mul(x, std).add_(mean)

    def _tensors(self, channels, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """float32 mean, std, 1/std `[len(channels)]` on x's device, cached (no copy per batch)."""
        key = (None if channels is None else tuple(int(c) for c in channels), x.device)
        expected = self.num_channels if channels is None else len(key[0])
        if x.shape[-1] != expected:
            raise ValueError(f"tensor has {x.shape[-1]} channels in its last dim, expected {expected}")
        if key not in self._cache:
            index = list(range(self.num_channels)) if channels is None else list(key[0])
            self._cache[key] = tuple(torch.tensor(values, dtype=torch.float32, device=x.device)
                                     for values in (self.mean[index], self.std[index], 1.0 / self.std[index]))
        return self._cache[key]

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Plain python values (JSON- and torch.save-friendly)."""
        return {
            "version": _STATE_VERSION,
            "mode": self.mode,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "include_missing": self.include_missing,
            "missing_value": self.missing_value,
            "count": None if self.count is None else np.asarray(self.count).tolist(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> "Scaler":
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"scaler state version {state.get('version')!r}, this pgti reads {_STATE_VERSION}")
        return cls(np.array(state["mean"]), np.array(state["std"]), state["mode"], bool(state["include_missing"]),
                   float(state["missing_value"]), None if state.get("count") is None else np.array(state["count"]))


def _step_weights(train_starts: np.ndarray, num_steps: int, input_steps: int, output_steps: int,
                  mode: str) -> np.ndarray:
    """How many times each time step counts in the fit, float64 `[T]`."""
    if mode == "dcrnn":  # every appearance of the step in a training input window
        return step_multiplicity(train_starts, num_steps, 0, input_steps).astype(np.float64)
    covered = step_multiplicity(train_starts, num_steps, 0, input_steps + output_steps)
    return (covered > 0).astype(np.float64)


def _host_block(signals, t0: int, t1: int) -> np.ndarray:
    """signals[t0:t1] as a numpy array (a view for numpy; a small copy for torch)."""
    if isinstance(signals, torch.Tensor):
        block = signals[t0:t1]
        return block.to("cpu", torch.float32 if block.dtype == torch.bfloat16 else block.dtype).numpy()
    return np.asarray(signals[t0:t1])


class _RunningStats:
    """Weighted per-channel (weight, mean, M2), merged block by block (Chan et al. 1979)."""

    def __init__(self, num_channels: int):
        self.weight = np.zeros(num_channels)
        self.mean = np.zeros(num_channels)
        self.m2 = np.zeros(num_channels)

    def add(self, block: np.ndarray, step_weight: np.ndarray, skip_value: float | None) -> None:
        """block [t, N, C]; step_weight float64 [t]; values equal to skip_value get weight 0."""
        values = block.astype(np.float64)
        weight = np.broadcast_to(step_weight[:, None, None], values.shape)
        if skip_value is not None:
            weight = weight * (block != skip_value)
        block_weight = weight.sum(axis=(0, 1))
        if not block_weight.any():
            return
        safe = np.where(block_weight > 0, block_weight, 1.0)
        block_mean = (weight * values).sum(axis=(0, 1)) / safe
        values -= block_mean
        block_m2 = (weight * values * values).sum(axis=(0, 1))
        total = self.weight + block_weight
        safe_total = np.where(total > 0, total, 1.0)
        delta = block_mean - self.mean
        self.mean = self.mean + delta * block_weight / safe_total
        self.m2 = self.m2 + block_m2 + delta * delta * self.weight * block_weight / safe_total
        self.weight = total
