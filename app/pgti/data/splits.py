"""Window starts and chronological splits (no torch: the config checks and the scaler use them).

A forecasting sample is a window of the raw series `S [T, N, C]` (time steps, sensors,
channels) starting at step `s`:

    x = S[s : s + Tin]              inputs  [Tin, N, C]
    y = S[s + Tin : s + Tin + Tout] targets [Tout, N, C]

Conventions (as DCRNN's `generate_training_data.py`, x_offsets = -11..0, y_offsets = 1..12):
window i of the series uses steps [i, i+Tin) as x and [i+Tin, i+Tin+Tout) as y, so there are
S = T - (Tin + Tout) + 1 windows (every `stride`-th of them when stride > 1).

Splits (`make_splits`) are chronological by window start:
- "dcrnn": exactly DCRNN's counts, num_test = round(r_test * S), num_train = round(r_train * S)
  with Python's `round` (round half to even), num_val = the rest; train first, then val, then
  the last num_test windows. The train windows' targets overlap the first val windows' inputs
  (and val/test likewise): that is what the literature's numbers are computed on.
- "strict": the same boundaries, minus the val and test windows that would touch a time step
  used by an earlier split (the first ceil((Tin+Tout)/stride) - 1 of each), so no step is seen by
  two splits: no target of one split is an input of another (no leakage). Train is identical
  to "dcrnn"'s, so the scaler is too.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pgti.errors import UserError

SPLITS = ("train", "val", "test")
SPLIT_MODES = ("dcrnn", "strict")
DEFAULT_RATIOS = (0.7, 0.1, 0.2)



def count_windows(num_steps: int, input_steps: int = 12, output_steps: int = 12, stride: int = 1) -> int:
    """Number of windows of `input_steps + output_steps` steps in a series of `num_steps`:
    every `stride`-th of the T - (Tin + Tout) + 1 possible starts (0 if the series is too short)."""
    possible = num_steps - (input_steps + output_steps) + 1
    return 0 if possible <= 0 else -(-possible // stride)


def all_window_starts(num_steps: int, input_steps: int = 12, output_steps: int = 12, stride: int = 1) -> np.ndarray:
    """Window starts 0, stride, 2*stride, ... as int64 `[S]` (steps)."""
    check_steps(input_steps, output_steps, stride)
    return np.arange(count_windows(num_steps, input_steps, output_steps, stride), dtype=np.int64) * stride


def dcrnn_split_counts(num_windows: int, ratios: Sequence[float] = DEFAULT_RATIOS) -> tuple[int, int, int]:
    """(train, val, test) window counts exactly as DCRNN's `generate_train_val_test`:
    test = round(S * r_test), train = round(S * r_train) (Python's round: half to even), val = rest."""
    r_train, r_val, r_test = _check_ratios(ratios)
    num_test = round(num_windows * r_test)
    num_train = round(num_windows * r_train)
    num_val = num_windows - num_test - num_train
    if num_val < 0:  # only reachable with ratios whose rounding overshoots on a tiny S
        num_train += num_val
        num_val = 0
    return num_train, num_val, num_test


def make_splits(
    num_steps: int,
    input_steps: int = 12,
    output_steps: int = 12,
    stride: int = 1,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    mode: str = "dcrnn",
) -> dict[str, np.ndarray]:
    """Chronological train/val/test window starts, `{"train": int64 [S_train], ...}` (steps).

    `mode` "dcrnn" reproduces DCRNN's split; "strict" drops the val/test windows that touch a
    step of an earlier split (see the module docstring). Raises `UserError` when the series
    is too short to give every split with a positive ratio at least one window.
    """
    if mode not in SPLIT_MODES:
        raise UserError(f"split mode {mode!r} is not one of {', '.join(SPLIT_MODES)}; choose one of them")
    starts = all_window_starts(num_steps, input_steps, output_steps, stride)
    num_train, num_val, num_test = dcrnn_split_counts(len(starts), ratios)
    splits = {
        "train": starts[:num_train],
        "val": starts[num_train:num_train + num_val],
        "test": starts[num_train + num_val:],
    }
    if mode == "strict":
        window = input_steps + output_steps
        first_free = 0  # first step not yet used by an earlier split
        for name in SPLITS:
            kept = splits[name][splits[name] >= first_free]
            splits[name] = kept
            if kept.size:
                first_free = int(kept[-1]) + window
    for name, ratio in zip(SPLITS, ratios):
        if ratio > 0 and splits[name].size == 0:
            raise UserError(
                f"the {name} split is empty: {num_steps} steps give {len(starts)} windows of "
                f"{input_steps}+{output_steps} steps (stride {stride}, {mode} split {tuple(ratios)}); "
                "use a longer series, shorter windows or other ratios")
    return splits


def step_multiplicity(window_starts: np.ndarray, num_steps: int, offset: int, length: int) -> np.ndarray:
    """How many windows use each time step, int64 `[T]`, for the span [s + offset, s + offset
    + length) of every start s. offset=0, length=Tin counts the input windows (DCRNN's x)."""
    diff = np.zeros(num_steps + 1, dtype=np.int64)
    first = np.asarray(window_starts, dtype=np.int64) + offset
    np.add.at(diff, first, 1)
    np.add.at(diff, first + length, -1)
    return np.cumsum(diff[:-1])


def check_steps(input_steps: int, output_steps: int, stride: int) -> None:
    if input_steps < 1 or output_steps < 1 or stride < 1:
        raise UserError(f"window input_steps={input_steps}, output_steps={output_steps}, stride={stride}: "
                        "all must be >= 1")


def _check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise UserError(f"split ratios {tuple(ratios)} must be three non-negative numbers (train, val, test) "
                        "summing to 1, e.g. 0.7, 0.1, 0.2")
    return float(ratios[0]), float(ratios[1]), float(ratios[2])
