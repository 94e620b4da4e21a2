"""Windows, splits and index-batching (pgti.data.splits, pgti.data.windows, pgti.data.batcher)."""
from __future__ import annotations

import datetime as dt
import threading
import warnings

import numpy as np
import pytest
import torch
from helpers_windows import (
    dcrnn_time_in_day,
    dcrnn_windows,
    random_config,
    random_series,
)

from pgti.bench.baselines import materialize_windows
from pgti.data.batcher import IndexBatcher, epoch_order
from pgti.data.scaler import Scaler
from pgti.data.splits import SPLITS, all_window_starts, make_splits
from pgti.data.windows import WindowGather, WindowSpec, calendar_features, read_series
from pgti.errors import UserError

# --------------------------------------------------------------------------- gather vs the references


def test_gather_reproduces_dcrnn_window_loop():
    signals, timestamps = random_series(0, 200, 6, 2)
    x_ref, y_ref = dcrnn_windows(signals.astype(np.float64))
    gather = WindowGather(signals, timestamps)
    x, y = gather.gather(np.arange(len(x_ref)))
    assert torch.equal(x, torch.from_numpy(x_ref).float()) and torch.equal(y, torch.from_numpy(y_ref).float())


def _batches_of(batcher):
    return [(b.x.clone(), b.y.clone(), b.starts.clone()) for b in batcher]


@pytest.mark.parametrize("seed", range(12))
def test_index_batches_equal_materialized_samples(seed):
    cfg = random_config(seed)
    signals, timestamps = random_series(seed, cfg["num_steps"], cfg["num_nodes"], cfg["num_channels"])
    splits = make_splits(cfg["num_steps"], cfg["input_steps"], cfg["output_steps"], cfg["stride"], cfg["ratios"])
    spec = WindowSpec(cfg["input_steps"], cfg["output_steps"], cfg["input_channels"], cfg["target_channels"],
                      time_of_day=seed % 2 == 0, day_of_week=seed % 3 == 0, normalize_targets=seed % 4 == 0)
    scaler = Scaler.fit(signals, splits["train"], input_steps=cfg["input_steps"]) if seed % 5 else None
    for name in SPLITS:
        x_all, y_all = materialize_windows(signals, timestamps, splits[name], spec, scaler)
        for shuffle in (False, True):
            batcher = IndexBatcher(signals, timestamps, splits[name], cfg["batch_size"], spec, scaler,
                                   shuffle=shuffle, seed=seed, drop_last=shuffle)
            batcher.set_epoch(3)
            order = epoch_order(len(splits[name]), seed, 3, shuffle)
            batches = _batches_of(batcher)
            assert len(batches) == len(batcher)
            for k, (x, y, starts) in enumerate(batches):
                rows = order[k * cfg["batch_size"]:(k + 1) * cfg["batch_size"]]
                assert torch.equal(starts, torch.from_numpy(splits[name])[rows])
                assert torch.equal(x, x_all[rows]), (name, shuffle, k)
                assert torch.equal(y, y_all[rows]), (name, shuffle, k)
            covered = sum(len(b[2]) for b in batches)
            assert covered == (len(order) // cfg["batch_size"] * cfg["batch_size"] if shuffle else len(order))


@pytest.mark.parametrize("calendar", [dict(time_of_day=True), dict(day_of_week=True),
                                      dict(time_of_day=True, day_of_week=True)])
@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_one_channel_with_calendar_equals_materialized(calendar, storage):
    # one data channel + one calendar channel takes the single-pass interleave; the others don't
    signals, timestamps = random_series(8, 200, 7, 1)
    train = make_splits(200)["train"]
    scaler = Scaler.fit(signals, train)
    spec = WindowSpec(**calendar)
    x_ref, y_ref = materialize_windows(signals, timestamps, train, spec, scaler)
    reference = signals if storage == "float32" else signals.astype(np.float16).astype(np.float32)
    x_exact, _ = materialize_windows(reference, timestamps, train, spec, scaler)
    x, y = WindowGather(signals, timestamps, spec, scaler, storage_dtype=storage).gather(train)
    assert x.shape == (len(train), 12, 7, 1 + spec.calendar_channels)
    assert torch.equal(x, x_exact) and torch.equal(y, torch.from_numpy(np.stack([reference[s + 12:s + 24]
                                                                                  for s in train])))
    assert storage == "float16" or torch.equal(x, x_ref)


@pytest.mark.parametrize("storage, bits", [("float16", 11), ("bfloat16", 8)])
def test_reduced_precision_storage_within_its_precision(storage, bits):
    signals, timestamps = random_series(7, 300, 5, 2)
    train = make_splits(300)["train"]
    scaler = Scaler.fit(signals, train)
    spec = WindowSpec(time_of_day=True)
    x_ref, y_ref = materialize_windows(signals, timestamps, train, spec, scaler)
    batcher = IndexBatcher(signals, timestamps, train, 32, spec, scaler, storage_dtype=storage)
    assert batcher.gather.signals.dtype == getattr(torch, storage)
    assert batcher.gather.signals.element_size() == 2  # half the memory of float32
    x = torch.cat([b.x for b in batcher])
    y = torch.cat([b.y for b in batcher])
    assert x.dtype == y.dtype == torch.float32
    unit = 2.0 ** -bits
    assert torch.all((y - y_ref).abs() <= unit * y_ref.abs())  # raw targets: relative rounding of the storage
    raw_x = torch.from_numpy(np.stack([signals[s:s + 12] for s in train]))
    x_tol = unit * raw_x.abs() / torch.from_numpy(scaler.std).float() + 1e-6
    assert torch.all((x[..., :2] - x_ref[..., :2]).abs() <= x_tol)
    assert torch.equal(x[..., 2], x_ref[..., 2])  # calendar is exact
    assert not torch.equal(x[..., :2], x_ref[..., :2])  # it really went through reduced precision


# --------------------------------------------------------------------------- calendar


def test_calendar_features_known_dates():
    sunday = int(dt.datetime(2017, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    stamps = np.array([sunday, sunday + 6 * 3600, sunday + 86_400 + 18 * 3600, sunday + 6 * 86_400 + 86_399])
    features = calendar_features(stamps, WindowSpec(time_of_day=True, day_of_week=True))
    assert features.dtype == np.float32 and features.shape == (4, 2)
    assert features[:3, 0].tolist() == [0.0, 0.25, 0.75]
    assert features[:, 1].tolist() == [6.0, 6.0, 0.0, 5.0]  # Sunday, Sunday, Monday, Saturday
    shifted = calendar_features(stamps[:1], WindowSpec(day_of_week=True, utc_offset_seconds=-3600))
    assert shifted[0, 0] == 5.0  # one hour earlier it was still Saturday


def test_calendar_features_match_datetime_and_dcrnn():
    rng = np.random.default_rng(3)
    stamps = np.sort(rng.integers(0, 2_000_000_000, 500))
    features = calendar_features(stamps, WindowSpec(time_of_day=True, day_of_week=True))
    weekdays = [dt.datetime.fromtimestamp(int(s), tz=dt.timezone.utc).weekday() for s in stamps]
    assert features[:, 1].tolist() == [float(w) for w in weekdays]
    assert np.array_equal(features[:, 0], dcrnn_time_in_day(stamps).astype(np.float32))
    assert calendar_features(stamps, WindowSpec()).shape == (500, 0)


# --------------------------------------------------------------------------- batcher behaviour


def _small_batcher(**kwargs):
    signals, timestamps = random_series(1, 260, 4, 2)
    starts = make_splits(260)["train"]
    options = dict(shuffle=True, seed=5)
    options.update(kwargs)
    return IndexBatcher(signals, timestamps, starts, 16, WindowSpec(time_of_day=True), **options), starts


def test_epoch_order_is_a_reproducible_permutation():
    first = epoch_order(1000, seed=1, epoch=0)
    assert sorted(first.tolist()) == list(range(1000))
    assert torch.equal(first, epoch_order(1000, seed=1, epoch=0))  # any rank recomputes it
    assert not torch.equal(first, epoch_order(1000, seed=1, epoch=1))
    assert not torch.equal(first, epoch_order(1000, seed=2, epoch=0))
    assert torch.equal(epoch_order(10, 1, 0, shuffle=False), torch.arange(10))


def test_set_epoch_changes_order_and_new_batcher_agrees():
    batcher, _ = _small_batcher()
    batcher.set_epoch(2)
    epoch2 = [b.starts for b in batcher]
    other, _ = _small_batcher()
    other.set_epoch(2)
    assert all(torch.equal(a, b.starts) for a, b in zip(epoch2, other))
    batcher.set_epoch(3)
    assert not torch.equal(torch.cat(epoch2), torch.cat([b.starts for b in batcher]))


def test_resume_mid_epoch_is_bit_exact():
    batcher, _ = _small_batcher()
    batcher.set_epoch(4)
    full = _batches_of(batcher)
    for k in (0, 1, 5, len(full) - 1, len(full)):
        batcher.set_epoch(4, start_batch=k)
        tail = _batches_of(batcher)
        assert len(tail) == len(full) - k
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and torch.equal(a[2], b[2])
                   for a, b in zip(full[k:], tail))
    with pytest.raises(ValueError):
        batcher.set_epoch(4, start_batch=len(full) + 1)


@pytest.mark.parametrize("num_windows, batch_size", [(100, 16), (96, 16), (5, 16), (1, 1)])
def test_len_and_drop_last(num_windows, batch_size):
    signals, timestamps = random_series(2, num_windows + 23, 3, 1)
    starts = all_window_starts(num_windows + 23)
    for drop_last in (False, True):
        batcher = IndexBatcher(signals, timestamps, starts, batch_size, drop_last=drop_last)
        sizes = [len(b.starts) for b in batcher]
        assert len(sizes) == len(batcher)
        assert sum(sizes) == (num_windows // batch_size * batch_size if drop_last else num_windows)
        assert all(size == batch_size for size in (sizes if drop_last else sizes[:-1]))


def test_explicit_starts_any_order_and_repeats():
    signals, timestamps = random_series(3, 150, 3, 2)
    starts = np.array([100, 3, 3, 126, 0, 57])
    batcher = IndexBatcher(signals, timestamps, starts, 4)
    x, y, got = (torch.cat(parts) for parts in zip(*batcher))
    assert got.tolist() == starts.tolist()
    for i, s in enumerate(starts):
        assert torch.equal(x[i], torch.from_numpy(signals[s:s + 12]))
        assert torch.equal(y[i], torch.from_numpy(signals[s + 12:s + 24]))
    with pytest.raises(ValueError, match="window starts"):
        IndexBatcher(signals, timestamps, np.array([127]), 4)  # 127 + 24 > 150
    with pytest.raises(ValueError, match="window starts"):
        IndexBatcher(signals, timestamps, np.array([-1]), 4)


def test_empty_starts_give_empty_batches():
    signals, timestamps = random_series(3, 100, 3, 1)
    spec = WindowSpec(time_of_day=True)
    x, y = WindowGather(signals, timestamps, spec).gather(np.array([], dtype=np.int64))
    assert x.shape == (0, 12, 3, 2) and y.shape == (0, 12, 3, 1)
    batcher = IndexBatcher(signals, timestamps, np.array([], dtype=np.int64), 8, spec, prefetch=True)
    assert len(batcher) == 0 and list(batcher) == []  # a rank's empty evaluation shard


def test_read_only_shared_view_is_used_in_place_and_never_written():
    signals, timestamps = random_series(4, 200, 5, 2)
    before = signals.copy()
    signals.flags.writeable = False  # as a view of MPI shared memory
    scaler = Scaler.fit(signals, make_splits(200)["train"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batcher = IndexBatcher(signals, timestamps, make_splits(200)["train"], 8,
                               WindowSpec(time_of_day=True, normalize_targets=True), scaler, shuffle=True)
        batches = list(batcher)
    assert batcher.gather.signals.data_ptr() == signals.ctypes.data  # zero copy
    assert np.array_equal(signals, before)
    assert batches[0].x.data_ptr() != signals.ctypes.data


def test_prefetch_and_buffer_reuse_give_the_same_batches():
    plain, _ = _small_batcher()
    expected = _batches_of(plain)
    for options in (dict(prefetch=True), dict(reuse_buffers=True), dict(prefetch=True, reuse_buffers=True)):
        batcher, _ = _small_batcher(**options)
        got = _batches_of(batcher)  # clone each batch before asking for the next
        assert len(got) == len(expected)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(expected, got)), options


def test_reused_buffers_are_recycled():
    kept = list(_small_batcher(reuse_buffers=True)[0])  # all alive: fresh tensors would all differ
    assert len(kept) > 3 and len({b.x.data_ptr() for b in kept}) == 1  # used where gathered: one pair
    kept = list(_small_batcher(reuse_buffers=True, prefetch=True)[0])
    assert len({b.x.data_ptr() for b in kept}) == 3  # prefetch: held, queued, being filled
    fresh = list(_small_batcher()[0])
    assert len({b.x.data_ptr() for b in fresh}) == len(fresh)


def test_gather_scratch_is_per_thread_and_reused():
    batcher, starts = _small_batcher()
    gather = batcher.gather
    first = gather.gather(starts[:16])[0].clone()
    scratch = gather._scratch(16).data_ptr()
    gather.gather(starts[16:32])
    assert gather._scratch(16).data_ptr() == scratch  # no per-batch allocation
    assert torch.equal(gather.gather(starts[:16])[0], first)
    other = []
    thread = threading.Thread(target=lambda: other.append(gather._scratch(16).data_ptr()))
    thread.start()
    thread.join()
    assert other[0] != scratch  # the prefetch thread never writes into the caller's scratch


def test_prefetch_thread_stops_when_the_loop_breaks():
    batcher, _ = _small_batcher(prefetch=True)
    threads_before = threading.active_count()
    for k, _batch in enumerate(batcher):
        if k == 1:
            break
    assert threading.active_count() == threads_before


def test_prefetch_propagates_errors():
    batcher, _ = _small_batcher(prefetch=True)
    batcher.gather.gather = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        list(batcher)


def test_pin_memory_without_cuda_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UserError, match="pin_memory"):
        _small_batcher(pin_memory=True)


def test_read_series_reads_file_in_blocks(make_dataset):
    from pgti.data.format import open_dataset, read_signals

    info = open_dataset(make_dataset(T=300, N=5, C=2))
    reference = torch.from_numpy(read_signals(info))
    assert torch.equal(read_series(info, block_steps=7), reference)
    half = read_series(info.path, "float16", block_steps=50)
    assert half.dtype == torch.float16 and torch.equal(half, reference.half())


# --------------------------------------------------------------------------- GPU


def _gpu_case():
    signals, timestamps = random_series(5, 400, 6, 2)
    splits = make_splits(400)
    scaler = Scaler.fit(signals, splits["train"])
    spec = WindowSpec(time_of_day=True, day_of_week=True)
    return signals, timestamps, splits["train"], scaler, spec


@pytest.mark.gpu
def test_gpu_index_batching_equals_cpu():
    signals, timestamps, train, scaler, spec = _gpu_case()
    cpu = IndexBatcher(signals, timestamps, train, 32, spec, scaler, shuffle=True, seed=1)
    gpu = IndexBatcher(signals, timestamps, train, 32, spec, scaler, shuffle=True, seed=1, device="cuda")
    assert gpu.gather.signals.is_cuda  # the raw array lives on the device
    for a, b in zip(cpu, gpu):
        assert b.x.is_cuda and b.y.is_cuda and b.starts.is_cuda
        assert torch.equal(a.starts, b.starts.cpu())
        assert torch.allclose(a.x, b.x.cpu(), rtol=0, atol=1e-6) and torch.equal(a.y, b.y.cpu())


@pytest.mark.gpu
@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_gpu_host_gather_pinned_prefetch_equals_cpu(storage):
    signals, timestamps, train, scaler, spec = _gpu_case()
    cpu = IndexBatcher(signals, timestamps, train, 32, spec, scaler, shuffle=True, storage_dtype=storage)
    staged = IndexBatcher(signals, timestamps, train, 32, spec, scaler, shuffle=True, device="cuda",
                          gather_on="host", pin_memory=True, prefetch=True, storage_dtype=storage)
    assert not staged.gather.signals.is_cuda and staged._ring == []
    for a, b in zip(cpu, staged):
        assert b.x.is_cuda and torch.equal(a.x, b.x.cpu()) and torch.equal(a.y, b.y.cpu())
    assert all(x.is_pinned() for x, _, _ in staged._ring)
