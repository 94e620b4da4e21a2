"""Window starts and chronological splits (pgti.data.splits) against DCRNN's code."""
from __future__ import annotations

import numpy as np
import pytest
from helpers_windows import dcrnn_split, random_config, strided_window_starts

from pgti.data.splits import SPLITS, all_window_starts, count_windows, dcrnn_split_counts, make_splits
from pgti.errors import UserError

# --------------------------------------------------------------------------- counts and splits


@pytest.mark.parametrize("seed", range(20))
def test_window_starts_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    num_steps, tin, tout, stride = (int(v) for v in (rng.integers(0, 80), rng.integers(1, 20),
                                                     rng.integers(1, 20), rng.integers(1, 5)))
    expected = strided_window_starts(num_steps, tin + tout, stride)
    assert np.array_equal(all_window_starts(num_steps, tin, tout, stride), expected)
    assert count_windows(num_steps, tin, tout, stride) == len(expected)
    if stride == 1:
        assert count_windows(num_steps, tin, tout) == max(0, num_steps - (tin + tout) + 1)


def test_split_counts_match_dcrnn_published_shapes():
    # DCRNN's README: METR-LA (34,272 steps) and PEMS-BAY (52,116 steps) train/val/test sample counts.
    assert dcrnn_split_counts(count_windows(34_272)) == (23_974, 3_425, 6_850)
    assert dcrnn_split_counts(count_windows(52_116)) == (36_465, 5_209, 10_419)


def test_split_counts_use_round_half_to_even():
    # 15 * 0.7 == 10.5 exactly: Python's round gives 10 (half-up would give 11).
    assert 15 * 0.7 == 10.5
    assert dcrnn_split_counts(15) == (10, 2, 3)
    assert dcrnn_split_counts(5) == (4, 0, 1)  # 3.5 -> 4


def test_split_counts_equal_dcrnn_code_for_every_size():
    for num_windows in range(0, 3000):
        assert dcrnn_split_counts(num_windows) == dcrnn_split(num_windows), num_windows
    for ratios in [(0.6, 0.2, 0.2), (0.8, 0.05, 0.15), (0.75, 0.0, 0.25)]:
        for num_windows in range(0, 500):
            assert dcrnn_split_counts(num_windows, ratios) == dcrnn_split(num_windows, ratios[2], ratios[0])


@pytest.mark.parametrize("seed", range(10))
def test_dcrnn_splits_are_chronological_slices(seed):
    cfg = random_config(seed)
    splits = make_splits(cfg["num_steps"], cfg["input_steps"], cfg["output_steps"], cfg["stride"], cfg["ratios"])
    starts = all_window_starts(cfg["num_steps"], cfg["input_steps"], cfg["output_steps"], cfg["stride"])
    num_train, num_val, num_test = dcrnn_split(len(starts), cfg["ratios"][2], cfg["ratios"][0])
    assert np.array_equal(splits["train"], starts[:num_train])
    assert np.array_equal(splits["val"], starts[num_train:num_train + num_val])
    assert np.array_equal(splits["test"], starts[-num_test:])  # DCRNN: x[-num_test:]


def _steps_used(starts, window):
    return {int(s) + k for s in starts for k in range(window)}


@pytest.mark.parametrize("seed", range(10))
def test_strict_split_shares_no_time_step(seed):
    rng = np.random.default_rng(seed)
    num_steps, tin, tout, stride = int(rng.integers(400, 900)), int(rng.integers(1, 13)), int(rng.integers(1, 13)), \
        int(rng.integers(1, 4))
    window = tin + tout
    strict = make_splits(num_steps, tin, tout, stride, mode="strict")
    dcrnn = make_splits(num_steps, tin, tout, stride)
    used = {name: _steps_used(strict[name], window) for name in SPLITS}
    assert not used["train"] & used["val"] and not used["train"] & used["test"] and not used["val"] & used["test"]
    assert np.array_equal(strict["train"], dcrnn["train"])
    for name, previous in (("val", "train"), ("test", "val")):
        assert set(strict[name]) <= set(dcrnn[name])
        first_free = strict[previous][-1] + window  # first step no earlier window uses
        dropped = sorted(set(dcrnn[name]) - set(strict[name]))
        assert all(s < first_free for s in dropped)  # only windows that would overlap are dropped
        assert len(dropped) == -(-window // stride) - 1
        assert strict[name][0] >= first_free
    # the dcrnn split does leak: its val inputs contain train targets
    assert _steps_used(dcrnn["train"], window) & _steps_used(dcrnn["val"], window)


def test_split_errors_are_user_errors():
    with pytest.raises(UserError, match="empty"):
        make_splits(25)  # 2 windows: round(0.4) = 0 test windows
    with pytest.raises(UserError, match="ratios"):
        make_splits(1000, ratios=(0.7, 0.2, 0.2))
    with pytest.raises(UserError, match="mode"):
        make_splits(1000, mode="random")
    with pytest.raises(UserError, match=">= 1"):
        make_splits(1000, input_steps=0)
