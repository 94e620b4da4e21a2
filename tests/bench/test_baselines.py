"""The peers' loading schemes (app/pgti/bench/baselines.py): correct, and identical to index-batching."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data.helpers_windows import dcrnn_time_in_day, dcrnn_windows, pgt_index_dataset_data, random_config, random_series
from pgti.bench.baselines import (
    MaterializedBatches,
    PerSampleWindows,
    materialize_windows,
    per_sample_loader,
    prepare_series,
    prepare_series_pgt,
)
from pgti.data.batcher import IndexBatcher
from pgti.data.scaler import Scaler
from pgti.data.splits import SPLITS, make_splits
from pgti.data.windows import WindowSpec, window_view


def test_materialized_equals_dcrnn_generate_training_data():
    # DCRNN: data = concat(speed, time_in_day); x/y = its window loop over all samples.
    signals, timestamps = random_series(0, 250, 5, 1)
    data = np.concatenate([signals.astype(np.float64),
                           np.broadcast_to(dcrnn_time_in_day(timestamps)[:, None, None], signals.shape)], axis=-1)
    x_ref, y_ref = dcrnn_windows(data)
    starts = np.arange(len(x_ref))
    x, y = materialize_windows(signals, timestamps, starts, WindowSpec(time_of_day=True))
    assert x.shape == (len(x_ref), 12, 5, 2) and y.shape == (len(x_ref), 12, 5, 1)
    assert torch.equal(x, torch.from_numpy(x_ref).float())
    assert torch.equal(y, torch.from_numpy(y_ref[..., :1]).float())  # DCRNN's labels: y[..., :output_dim]


def test_materialized_normalization_matches_dcrnn_scaler():
    signals, timestamps = random_series(1, 300, 4, 2)
    train = make_splits(300)["train"]
    scaler = Scaler.fit(signals, train)
    x, _ = materialize_windows(signals, timestamps, train, WindowSpec(), scaler)
    x_ref, _ = dcrnn_windows(signals.astype(np.float64))
    expected = (x_ref[:len(train)] - scaler.mean) / scaler.std  # DCRNN's transform, in float64
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_window_view_is_every_window():
    series = torch.arange(60.0).view(10, 3, 2)
    view = window_view(series, 4)
    assert view.shape == (7, 4, 3, 2) and view.data_ptr() == series.data_ptr()
    for s in range(7):
        assert torch.equal(view[s], series[s:s + 4])


@pytest.mark.parametrize("seed", range(6))
def test_all_three_methods_deliver_identical_batches(seed):
    cfg = random_config(seed)
    signals, timestamps = random_series(seed, cfg["num_steps"], cfg["num_nodes"], cfg["num_channels"])
    splits = make_splits(cfg["num_steps"], cfg["input_steps"], cfg["output_steps"], cfg["stride"], cfg["ratios"])
    spec = WindowSpec(cfg["input_steps"], cfg["output_steps"], cfg["input_channels"], cfg["target_channels"],
                      time_of_day=True, day_of_week=seed % 2 == 1, normalize_targets=seed % 3 == 0)
    scaler = Scaler.fit(signals, splits["train"], input_steps=cfg["input_steps"])
    inputs, targets = prepare_series(signals, timestamps, spec, scaler)
    batch, drop_last = cfg["batch_size"], seed % 2 == 0
    for name in SPLITS:
        index = IndexBatcher(signals, timestamps, splits[name], batch, spec, scaler, shuffle=True, seed=seed,
                             drop_last=drop_last)
        materialized = MaterializedBatches(*materialize_windows(signals, timestamps, splits[name], spec, scaler),
                                           splits[name], batch, shuffle=True, seed=seed, drop_last=drop_last)
        index.set_epoch(2)
        materialized.set_epoch(2)
        per_sample = per_sample_loader(PerSampleWindows(inputs, targets, splits[name], spec), batch, shuffle=True,
                                       seed=seed, epoch=2, drop_last=drop_last)
        assert len(index) == len(materialized) == len(per_sample)
        for a, b, (x, y) in zip(index, materialized, per_sample):
            assert torch.equal(a.starts, b.starts)
            assert torch.equal(a.x, b.x) and torch.equal(a.x, x)
            assert torch.equal(a.y, b.y) and torch.equal(a.y, y)


def test_per_sample_getitem_returns_views_of_the_prepared_series():
    signals, timestamps = random_series(2, 100, 3, 1)
    inputs, targets = prepare_series(signals, timestamps, WindowSpec(time_of_day=True))
    dataset = PerSampleWindows(inputs, targets, np.array([5, 40]))
    x, y = dataset[1]
    assert x.data_ptr() == inputs[40].data_ptr() and y.data_ptr() == targets[52].data_ptr()
    assert len(dataset) == 2


# --------------------------------------------------------------------------- PGT-I's IndexDataset


def test_pgt_series_is_pgt_i_preprocessing():
    signals, timestamps = random_series(4, 400, 6, 1)
    train = make_splits(400)["train"]
    scaler = Scaler.fit(signals, train)
    data = prepare_series_pgt(signals, timestamps, WindowSpec(time_of_day=True), scaler)
    expected = pgt_index_dataset_data(signals[..., 0], timestamps, scaler.mean[0], scaler.std[0])
    assert data.dtype == np.float64 and data.shape == (400, 6, 2)
    assert np.array_equal(data, expected)
    dataset = PerSampleWindows(data, data, train)
    x, y = dataset[3]
    start = int(train[3])
    assert x.dtype == y.dtype == torch.float64 and x.shape == y.shape == (12, 6, 2)  # y: every feature too
    assert x.data_ptr() == data[start:].ctypes.data and y.data_ptr() == data[start + 12:].ctypes.data  # from_numpy


def _assert_pgt_equals_index(pgt: torch.Tensor, index: torch.Tensor, scaler_mean, scaler_std, data_channels):
    """pgt [B, t, N, Cd + K] float64 (channel-selected to match `index`) vs index's float32, whose
    data channels are (x - mean) * (1/std) in float32: equal within float32 rounding, calendar exact."""
    assert pgt.dtype == torch.float64 and index.dtype == torch.float32 and pgt.shape == index.shape
    got = pgt.float()
    data = slice(0, data_channels)
    offset = torch.as_tensor(np.abs(scaler_mean / scaler_std), dtype=torch.float64)
    tolerance = 4 * 2.0 ** -24 * (pgt[..., data].abs() + offset)  # a few float32 roundings of |x - m| / s and m / s
    assert torch.all((got[..., data].double() - index[..., data].double()).abs() <= tolerance)
    assert torch.equal(got[..., data_channels:], index[..., data_channels:])  # calendar: same float64 value, rounded


@pytest.mark.parametrize("seed", range(4))
def test_pgt_i_per_sample_equals_index_batching_after_cast(seed):
    cfg = random_config(seed)
    signals, timestamps = random_series(seed, cfg["num_steps"], cfg["num_nodes"], cfg["num_channels"])
    splits = make_splits(cfg["num_steps"], cfg["input_steps"], cfg["output_steps"], cfg["stride"], cfg["ratios"])
    inputs = cfg["input_channels"]
    # PGT-I standardizes its one array, so y is normalized too and holds only input channels
    spec = WindowSpec(cfg["input_steps"], cfg["output_steps"], inputs, (inputs[-1],), time_of_day=True,
                      day_of_week=seed % 2 == 1, normalize_targets=True)
    scaler = Scaler.fit(signals, splits["train"], input_steps=cfg["input_steps"])
    data = prepare_series_pgt(signals, timestamps, spec, scaler)
    assert data.shape == (cfg["num_steps"], cfg["num_nodes"], len(inputs) + spec.calendar_channels)
    mean, std = scaler.mean[list(inputs)], scaler.std[list(inputs)]
    for name in SPLITS:
        index = IndexBatcher(signals, timestamps, splits[name], cfg["batch_size"], spec, scaler, shuffle=True,
                             seed=seed)
        index.set_epoch(1)
        pgt = per_sample_loader(PerSampleWindows(data, data, splits[name], spec), cfg["batch_size"], shuffle=True,
                                seed=seed, epoch=1)
        assert len(index) == len(pgt)
        for a, (x, y) in zip(index, pgt):
            assert y.shape[-1] == x.shape[-1] == len(inputs) + spec.calendar_channels  # y carries every feature
            _assert_pgt_equals_index(x, a.x, mean, std, len(inputs))
            target = len(inputs) - 1  # spec's target channel inputs[-1], at its position in PGT-I's array
            _assert_pgt_equals_index(y[..., target:target + 1], a.y, mean[-1:], std[-1:], 1)
    assert not np.array_equal(data[..., 0], signals[..., inputs[0]])  # really standardized


@pytest.mark.gpu
def test_pgt_i_gpu_variant_returns_device_slices():
    signals, timestamps = random_series(6, 300, 5, 1)
    train = make_splits(300)["train"]
    spec = WindowSpec(time_of_day=True, normalize_targets=True)
    scaler = Scaler.fit(signals, train)
    data = prepare_series_pgt(signals, timestamps, spec, scaler, device="cuda")
    assert data.is_cuda and data.dtype == torch.float32 and data.shape == (300, 5, 2)
    x, y = PerSampleWindows(data, data, train)[2]
    assert x.data_ptr() == data[train[2]].data_ptr() and y.data_ptr() == data[train[2] + 12].data_ptr()
    host = torch.from_numpy(prepare_series_pgt(signals, timestamps, spec, scaler)).float()
    assert torch.equal(data.cpu(), host)


@pytest.mark.gpu
def test_per_sample_gpu_variant_equals_index():
    signals, timestamps = random_series(3, 300, 5, 2)
    train = make_splits(300)["train"]
    spec = WindowSpec(time_of_day=True)
    scaler = Scaler.fit(signals, train)
    inputs, targets = prepare_series(signals, timestamps, spec, scaler, device="cuda")
    loader = per_sample_loader(PerSampleWindows(inputs, targets, train, spec), 16, shuffle=True)
    index = IndexBatcher(signals, timestamps, train, 16, spec, scaler, shuffle=True, device="cuda")
    for a, (x, y) in zip(index, loader):
        assert x.is_cuda and torch.equal(a.x, x) and torch.equal(a.y, y)
