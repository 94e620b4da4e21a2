"""Synthetic traffic: deterministic, streamed, and realistic in the ways that matter."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from pgti.data.format import open_dataset, read_signals
from pgti.data.synth import PRESETS, SynthSpec, TrafficSimulator, generate, preset_spec


def _signals(spec):
    return np.concatenate([block for _, block in TrafficSimulator(spec).blocks()])


def test_same_seed_same_bytes_through_the_cli(tmp_path, pgti_cli):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    for path, seed in ((a, 7), (b, 7), (c, 8)):
        status, out, err = pgti_cli("data", "synth", "--preset", "tiny", "--seed", seed, "--steps", 600,
                                    "--out", path, "--quiet")
        assert status == 0, err
    sa, sb, sc = (read_signals(open_dataset(p)) for p in (a, b, c))
    assert sa.shape == (600, 64, 1)
    assert np.array_equal(sa, sb)
    assert not np.array_equal(sa, sc)


def test_presets_have_the_published_sizes():
    assert PRESETS["metr-la"][:2] == (207, 34_272)
    assert PRESETS["pems-bay"][:2] == (325, 52_116)
    assert PRESETS["pems-all-la"][:2] == (2_716, 105_120)
    assert PRESETS["pems"][:2] == (11_160, 105_120)
    assert PRESETS["tiny"][:2] == (64, 14 * 288)


def test_graph_is_dcrnn_style():
    sim = TrafficSimulator(SynthSpec(num_nodes=120, num_steps=10))
    src, dst = sim.edge_index
    w = sim.edge_weight
    assert src.min() >= 0 and dst.max() < 120
    assert np.all(w >= 0.1 - 1e-6) and np.all(w <= 1.0)
    loops = src == dst
    assert loops.sum() == 120 and np.allclose(w[loops], 1.0)  # DCRNN's unit diagonal
    # directed: the road graph is not symmetric
    pairs = set(zip(src[~loops].tolist(), dst[~loops].tolist()))
    assert any((b, a) not in pairs for a, b in pairs)
    assert 3.0 <= len(src) / 120 <= 15.0  # METR-LA has ~8 edges per sensor


def test_rush_hour_weekday_congestion_and_missing_readings():
    spec = SynthSpec(num_nodes=80, num_steps=14 * 288, start="2012-03-05", seed=1)  # starts on a Monday
    s = _signals(spec)[:, :, 0]
    assert 0.003 < (s == 0).mean() < 0.08  # METR-LA has ~8% missing, PEMS-BAY far less
    v = np.where(s > 0, s, np.nan).reshape(14, 288, 80)
    weekdays = np.r_[0:5, 7:12]
    night = np.nanmean(v[weekdays, 24:48])  # 02:00-04:00
    am_peak = np.nanmean(v[weekdays, 90:102])  # 07:30-08:30
    pm_peak = np.nanmean(v[weekdays, 204:216])  # 17:00-18:00
    weekend_pm = np.nanmean(v[[5, 6, 12, 13], 204:216])
    assert am_peak < night - 3 and pm_peak < night - 3
    assert weekend_pm > pm_peak + 2
    assert 55 < night < 75


def test_congestion_spreads_upstream_over_time():
    spec = SynthSpec(num_nodes=150, num_steps=10 * 288, start="2012-03-05", seed=4, missing=False)
    sim = TrafficSimulator(spec)
    s = np.concatenate([b for _, b in sim.blocks()])[:, :, 0]
    slot, sensor, dist = sim.reach
    slow = s < 0.6 * sim.free_speed  # congested readings
    lags = []
    for k in range(sim.sources.size):
        here = sensor[(slot == k) & (dist == 0)]
        far = sensor[(slot == k) & (dist > 2.5)]
        if here.size == 0 or far.size == 0:
            continue
        for day in range(5):
            day_slice = slice(day * 288 + 60, day * 288 + 144)  # the morning
            a = np.flatnonzero(slow[day_slice, here[0]])
            b = np.flatnonzero(slow[day_slice, far[0]])
            if a.size and b.size:
                lags.append(b[0] - a[0])
    assert len(lags) >= 5
    assert np.median(lags) > 0  # the queue reaches the upstream sensor later


def test_flow_and_occupancy_channels():
    s = _signals(SynthSpec(num_nodes=30, num_steps=600, channels=3, missing=False))
    speed, flow, occ = s[..., 0], s[..., 1], s[..., 2]
    assert (flow > 0).all() and ((occ > 0) & (occ <= 1)).all()
    # jammed traffic is denser: occupancy rises as speed falls
    assert np.corrcoef(speed.ravel(), occ.ravel())[0, 1] < -0.5


def test_generation_memory_is_bounded_by_a_day(tmp_path):
    def peak(days):
        tracemalloc.start()
        generate(SynthSpec(num_nodes=300, num_steps=days * 288), tmp_path / f"m{days}.h5", progress=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    short, long = peak(3), peak(12)
    assert long < 1.3 * short  # 4x the steps, not 4x the memory


def test_bad_synth_arguments(pgti_cli, tmp_path):
    status, _, err = pgti_cli("data", "synth", "--preset", "tiny", "--channels", "5", "--out", tmp_path / "x.h5")
    assert status == 2 and "--channels" in err
    with pytest.raises(ValueError):
        preset_spec("tiny", interval_seconds=7)
