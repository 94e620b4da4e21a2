"""Test helpers for windows / scaler / baselines: random series and DCRNN's reference code.

The references below are deliberately written the way DCRNN's `generate_training_data.py` and
`utils.load_dataset` are (Python loops, numpy, float64), not with pgti's code, so the tests
compare two independent implementations.
"""
from __future__ import annotations

import numpy as np

START_2017 = 1_483_228_800  # 2017-01-01 00:00 UTC, a Sunday


def random_series(seed: int, num_steps: int, num_nodes: int, num_channels: int, missing: float = 0.1,
                  interval: int = 300, start: int = START_2017):
    """(signals float32 [T, N, C] with ~`missing` zeros, timestamps int64 [T] unix seconds)."""
    rng = np.random.default_rng(seed)
    signals = rng.uniform(1.0, 80.0, size=(num_steps, num_nodes, num_channels)).astype(np.float32)
    signals *= np.arange(1, num_channels + 1, dtype=np.float32)  # channels with different scales
    signals[rng.random(signals.shape) < missing] = 0.0
    timestamps = start + int(rng.integers(0, 7 * 86_400 // interval)) * interval + interval * np.arange(num_steps)
    return signals, timestamps.astype(np.int64)


def random_config(seed: int) -> dict:
    """A random window/split/channel configuration small enough for fast tests."""
    rng = np.random.default_rng(1000 + seed)
    num_channels = int(rng.integers(1, 4))
    train = float(rng.uniform(0.5, 0.8))
    val = float(rng.uniform(0.05, 0.9 - train))
    channels = list(rng.permutation(num_channels)[: int(rng.integers(1, num_channels + 1))])
    return dict(
        num_steps=int(rng.integers(120, 400)), num_nodes=int(rng.integers(1, 9)), num_channels=num_channels,
        input_steps=int(rng.integers(1, 14)), output_steps=int(rng.integers(1, 14)),
        stride=int(rng.choice([1, 1, 2, 3])), ratios=(train, val, 1.0 - train - val),
        input_channels=tuple(int(c) for c in channels), target_channels=(int(rng.integers(0, num_channels)),),
        batch_size=int(rng.integers(1, 33)), seed=seed,
    )


def dcrnn_windows(data: np.ndarray, input_steps: int = 12, output_steps: int = 12):
    """DCRNN's `generate_graph_seq2seq_io_data` window loop over `data [T, N, C]` (float64):
    x_offsets = -(Tin-1)..0, y_offsets = 1..Tout. Returns x [S, Tin, N, C], y [S, Tout, N, C]."""
    x_offsets = np.sort(np.arange(-(input_steps - 1), 1, 1))
    y_offsets = np.sort(np.arange(1, output_steps + 1, 1))
    num_samples = data.shape[0]
    x, y = [], []
    min_t = abs(min(x_offsets))
    max_t = abs(num_samples - abs(max(y_offsets)))  # Exclusive
    for t in range(min_t, max_t):
        x.append(data[t + x_offsets, ...])
        y.append(data[t + y_offsets, ...])
    return np.stack(x, axis=0), np.stack(y, axis=0)


def dcrnn_split(num_samples: int, test_ratio: float = 0.2, train_ratio: float = 0.7):
    """DCRNN's `generate_train_val_test` counts, verbatim."""
    num_test = round(num_samples * test_ratio)
    num_train = round(num_samples * train_ratio)
    num_val = num_samples - num_test - num_train
    return num_train, num_val, num_test


def dcrnn_time_in_day(timestamps: np.ndarray) -> np.ndarray:
    """DCRNN's time_in_day via numpy datetime64 (df.index.values is datetime64)."""
    values = np.asarray(timestamps).astype("datetime64[s]")
    return (values - values.astype("datetime64[D]")) / np.timedelta64(1, "D")


def pgt_index_dataset_data(speed: np.ndarray, timestamps: np.ndarray, mean: float, std: float) -> np.ndarray:
    """PGT-I's `IndexDataset` preprocessing, step by step as its SC'25 artifacts do it (pandas
    float64 values, DCRNN's time_in_day from the datetime index), for one channel `speed [T, N]`:
    returns its float64 array [T, N, 2] (standardized speed, time of day)."""
    index_values = np.asarray(timestamps).astype("datetime64[s]").astype("datetime64[ns]")  # df.index.values
    data = np.expand_dims(speed.astype(np.float64), -1)  # np.expand_dims(df.values, -1)
    num_nodes = data.shape[1]
    time_ind = (index_values - index_values.astype("datetime64[D]")) / np.timedelta64(1, "D")
    time_in_day = np.tile(time_ind, [1, num_nodes, 1]).transpose((2, 1, 0))
    data = np.concatenate([data, time_in_day], axis=-1)
    data[..., 0] = (data[..., 0] - mean) / std
    return data


def strided_window_starts(num_steps: int, window: int, stride: int) -> np.ndarray:
    """Brute force: every start s with s % stride == 0 and s + window <= T."""
    return np.array([s for s in range(num_steps) if s % stride == 0 and s + window <= num_steps], dtype=np.int64)
