"""The train-only standard scaler (app/pgti/data/scaler.py)."""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pytest
import torch
from helpers_windows import dcrnn_split, dcrnn_windows, random_config, random_series

from pgti.data.scaler import Scaler
from pgti.data.splits import make_splits


def _training_inputs(signals, input_steps, output_steps, ratios=(0.7, 0.1, 0.2)):
    """DCRNN's x_train (float64), built with its own loop and split code."""
    x, _ = dcrnn_windows(signals.astype(np.float64), input_steps, output_steps)
    num_train, _, _ = dcrnn_split(len(x), ratios[2], ratios[0])
    return x[:num_train]


@pytest.mark.parametrize("seed", range(8))
def test_dcrnn_mode_equals_brute_force_on_training_input_windows(seed):
    cfg = random_config(seed)
    signals, _ = random_series(seed, cfg["num_steps"], cfg["num_nodes"], cfg["num_channels"])
    tin, tout = cfg["input_steps"], cfg["output_steps"]
    train = make_splits(cfg["num_steps"], tin, tout, 1, cfg["ratios"])["train"]
    x_train = _training_inputs(signals, tin, tout, cfg["ratios"])
    scaler = Scaler.fit(signals, train, input_steps=tin, output_steps=tout)
    assert scaler.include_missing  # DCRNN counts the zeros
    for c in range(cfg["num_channels"]):  # DCRNN: StandardScaler(mean=x_train[..., 0].mean(), std=...std())
        assert scaler.mean[c] == pytest.approx(x_train[..., c].mean(), rel=1e-6)
        assert scaler.std[c] == pytest.approx(x_train[..., c].std(), rel=1e-6)
    # the multiplicity matters: a plain mean over the training steps is a different number
    plain = signals[:train[-1] + tin, :, 0].astype(np.float64).mean()
    assert abs(plain - scaler.mean[0]) > 1e-9 * abs(plain)


@pytest.mark.parametrize("seed", range(4))
def test_dcrnn_mode_without_missing_values(seed):
    signals, _ = random_series(seed, 300, 5, 2, missing=0.3)
    train = make_splits(300)["train"]
    x_train = _training_inputs(signals, 12, 12)
    scaler = Scaler.fit(signals, train, include_missing=False)
    for c in range(2):
        present = x_train[..., c][x_train[..., c] != 0.0]
        assert scaler.mean[c] == pytest.approx(present.mean(), rel=1e-6)
        assert scaler.std[c] == pytest.approx(present.std(), rel=1e-6)
        assert scaler.count[c] == present.size


def test_range_mode_is_plain_statistics_of_the_training_time_range():
    signals, _ = random_series(2, 400, 6, 2, missing=0.2)
    for stride in (1, 3):
        train = make_splits(400, 12, 12, stride)["train"]
        steps = signals[:train[-1] + 24].astype(np.float64)  # inputs and targets of the training windows
        for include in (False, True):
            scaler = Scaler.fit(signals, train, mode="range", include_missing=include)
            for c in range(2):
                values = steps[..., c] if include else steps[..., c][steps[..., c] != 0.0]
                assert scaler.mean[c] == pytest.approx(values.mean(), rel=1e-6)
                assert scaler.std[c] == pytest.approx(values.std(), rel=1e-6)
    assert not Scaler.fit(signals, train, mode="range").include_missing  # documented default


def test_fit_is_independent_of_blocks_and_source(tmp_path):
    from pgti.data.format import write_dataset

    signals, timestamps = random_series(3, 500, 7, 3)
    train = make_splits(500)["train"]
    reference = Scaler.fit(signals, train, block_values=10**9)
    path = write_dataset(tmp_path / "d.h5", signals, timestamps, node_ids=[str(i) for i in range(7)],
                         channels=["a", "b", "c"], interval_seconds=300, edge_index=np.zeros((2, 0), np.int64),
                         edge_weight=np.zeros(0, np.float32))
    others = [Scaler.fit(signals, train, block_values=1), Scaler.fit(signals, train, block_values=100),
              Scaler.fit(torch.from_numpy(signals), train), Scaler.fit(path, train, block_values=1000)]
    for other in others:
        np.testing.assert_allclose(other.mean, reference.mean, rtol=1e-12)
        np.testing.assert_allclose(other.std, reference.std, rtol=1e-12)


def test_fit_never_holds_a_float64_copy():
    signals, _ = random_series(4, 20_000, 200, 1)  # 16 MB float32; a float64 copy would be 32 MB
    train = make_splits(20_000)["train"]
    tracemalloc.start()
    try:
        Scaler.fit(signals, train)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < signals.nbytes / 2, peak


def test_state_dict_round_trip_through_json():
    signals, _ = random_series(5, 300, 4, 2)
    scaler = Scaler.fit(signals, make_splits(300)["train"], include_missing=False)
    restored = Scaler.from_state_dict(json.loads(json.dumps(scaler.state_dict())))
    assert np.array_equal(restored.mean, scaler.mean) and np.array_equal(restored.std, scaler.std)
    assert (restored.mode, restored.include_missing) == ("dcrnn", False)
    x = torch.randn(3, 12, 4, 2) * 20 + 40
    assert torch.equal(restored.transform(x), scaler.transform(x))
    with pytest.raises(ValueError, match="version"):
        Scaler.from_state_dict({**scaler.state_dict(), "version": 99})


def test_transform_uses_the_chosen_channels_and_inverts():
    scaler = Scaler(mean=np.array([10.0, 20.0, 30.0]), std=np.array([2.0, 4.0, 5.0]))
    x = torch.tensor([[35.0, 14.0]])  # raw channels 2 and 0
    z = scaler.transform(x, channels=[2, 0])
    assert z.tolist() == [[1.0, 2.0]]
    assert torch.equal(scaler.inverse_transform(z, channels=[2, 0]), x)
    assert scaler.transform(x.half(), channels=[2, 0]).dtype == torch.float32
    out = torch.empty(1, 2)
    assert scaler.transform(x, channels=[2, 0], out=out) is out and out.tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError, match="channels"):
        scaler.transform(x)  # 2 channels given, 3 expected


def test_constant_channel_gets_unit_std_and_empty_channel_fails():
    signals = np.full((100, 3, 2), 7.0, dtype=np.float32)
    train = make_splits(100)["train"]
    scaler = Scaler.fit(signals, train)
    assert scaler.std.tolist() == [1.0, 1.0] and scaler.mean.tolist() == [7.0, 7.0]
    signals[..., 1] = 0.0  # all missing
    with pytest.raises(ValueError, match="channel 1"):
        Scaler.fit(signals, train, include_missing=False)
