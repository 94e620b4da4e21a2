"""The peers' loading schemes (app/pgti/data/baselines.py): correct, and identical to index-batching."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_windows import dcrnn_time_in_day, dcrnn_windows, random_config, random_series

from pgti.data.baselines import (MaterializedBatches, PerSampleWindows, materialize_windows, per_sample_loader,
                                 prepare_series)
from pgti.data.scaler import Scaler
from pgti.data.windows import SPLITS, IndexBatcher, WindowSpec, make_splits, window_view


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
