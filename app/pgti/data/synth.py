"""Realistic synthetic traffic, streamed to a pgti dataset one day at a time.

What it models (speeds in mph at 5-minute readings, like METR-LA / PEMS-BAY):
- a road network of freeway corridors (`roads.py`) with DCRNN's Gaussian-kernel graph;
- per-sensor free-flow speeds; a daily demand profile with morning and evening peaks whose
  strength depends on the corridor direction (inbound in the morning, outbound at night), a
  weaker midday weekend profile, and a per-day factor (weather, holidays);
- recurrent congestion: bottlenecks at merges and on-ramps hold a queue that grows while
  demand exceeds capacity and dissolves after; the queue spreads *upstream along the road
  links* over time (a shockwave), so congestion reaches upstream sensors later;
- incidents at random places and times: a queue that builds while the lane is blocked and
  then discharges;
- sensor noise (AR(1), larger in congestion), and missing readings stored as the dataset's
  `missing_value` 0.0: single dropped samples, multi-hour sensor outages, multi-day dead
  sensors and rare network-wide gaps;
- optional flow and occupancy channels from Greenshields' fundamental diagram.

Determinism: everything is drawn from `numpy.random.default_rng([seed, stream, day])`, so a
seed gives the same bytes whatever the machine; state carried from day to day (queues, noise,
outages) is updated in order. Memory is bounded by one day of data (a few tens of MB even at
11,160 sensors), whatever the number of steps.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass

import numpy as np

from pgti.data.roads import build_road_network, gaussian_kernel_graph, upstream_reach

# name: (sensors, steps, start date) — sizes of the public datasets they stand in for.
PRESETS: dict[str, tuple[int, int, str]] = {
    "tiny": (64, 14 * 288, "2012-03-01"),
    "metr-la": (207, 34_272, "2012-03-01"),
    "pems-bay": (325, 52_116, "2017-01-01"),
    "pems-all-la": (2_716, 105_120, "2018-01-01"),
    "pems": (11_160, 105_120, "2018-01-01"),
}
CHANNEL_NAMES = ("speed", "flow", "occupancy")
DAY_SECONDS = 86_400
_STREAM_NETWORK, _STREAM_DAY, _STREAM_INCIDENTS, _STREAM_MISSING = 0, 1, 2, 3


@dataclass
class SynthSpec:
    num_nodes: int
    num_steps: int
    channels: int = 1
    interval_seconds: int = 300
    start: str = "2012-03-01"
    seed: int = 0
    missing: bool = True
    name: str = "synthetic"

    def __post_init__(self):
        if self.num_nodes < 2:
            raise ValueError("--nodes must be at least 2")
        if self.num_steps < 1:
            raise ValueError("--steps must be at least 1")
        if not 1 <= self.channels <= len(CHANNEL_NAMES):
            raise ValueError(f"--channels must be 1..{len(CHANNEL_NAMES)} ({', '.join(CHANNEL_NAMES)})")
        if self.interval_seconds <= 0 or DAY_SECONDS % self.interval_seconds:
            raise ValueError("--interval must divide a day (e.g. 300 for 5-minute data)")

    @property
    def start_unix(self) -> int:
        day = _dt.date.fromisoformat(self.start)
        return int(_dt.datetime(day.year, day.month, day.day, tzinfo=_dt.timezone.utc).timestamp())

    @property
    def steps_per_day(self) -> int:
        return DAY_SECONDS // self.interval_seconds


def preset_spec(preset: str, **overrides) -> SynthSpec:
    nodes, steps, start = PRESETS[preset]
    base = dict(num_nodes=nodes, num_steps=steps, start=start, name=preset)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return SynthSpec(**base)


def _max_by_sensor(values: np.ndarray, sensor: np.ndarray, out: np.ndarray) -> None:
    """out[:, s] = max(out[:, s], max of values[:, p] over pairs p with sensor[p] == s)."""
    if sensor.size == 0:
        return
    order = np.argsort(sensor, kind="stable")
    uniq, first = np.unique(sensor[order], return_index=True)
    out[:, uniq] = np.maximum(out[:, uniq], np.maximum.reduceat(values[:, order], first, axis=1))


class TrafficSimulator:
    """Generates `(timestamps [t], signals [t, N, C])` one day at a time."""

    QUEUE_GROWTH_KM = 4.0  # km of queue per step per unit of excess demand
    QUEUE_DISCHARGE_KM = 1.2  # km per step per unit of spare capacity
    REACH_KM = 9.0  # the longest queue we follow upstream

    def __init__(self, spec: SynthSpec):
        self.spec = spec
        rng = np.random.default_rng([spec.seed, _STREAM_NETWORK])
        self.network = build_road_network(spec.num_nodes, rng)
        self.edge_index, self.edge_weight = gaussian_kernel_graph(self.network, sigma_km=3.0)
        n = spec.num_nodes
        self.free_speed = np.clip(rng.normal(65.0, 3.0, n), 55.0, 72.0)
        self.jam_ratio = rng.uniform(0.18, 0.45, n)  # congested speed / free speed
        self.lanes = rng.integers(3, 6, n)
        # Direction 0 of each corridor is "inbound": heavy in the morning; direction 1 at night.
        inbound = (self.network.corridor % 2 == 0)
        ramps = rng.random(n) < 1.0 / 7.0
        self.sources = np.flatnonzero(self.network.junction | ramps)
        b = self.sources.size
        self.strength = rng.uniform(0.85, 1.35, b)
        self.am_weight = np.where(inbound[self.sources], 1.0, 0.55) * rng.uniform(0.8, 1.1, b)
        self.pm_weight = np.where(inbound[self.sources], 0.6, 1.0) * rng.uniform(0.8, 1.1, b)
        self.queue_max = rng.uniform(2.0, self.REACH_KM, b)
        self.reach = upstream_reach(self.network, self.sources, self.REACH_KM)
        self.queue = np.zeros(b)
        self.noise = np.zeros(n)
        self.outage_left = np.zeros(n, dtype=np.int64)
        self.network_outage_left = 0
        lat0, lon0 = 34.05, -118.25  # a local frame around Los Angeles
        self.lat = lat0 + self.network.xy_km[:, 1] / 111.0
        self.lon = lon0 + self.network.xy_km[:, 0] / (111.0 * math.cos(math.radians(lat0)))
        self.node_ids = [str(700_000 + 37 * i + int(d)) for i, d in enumerate(rng.integers(0, 37, n))]

    # ----------------------------------------------------------------- demand
    def _demand(self, day: int, tod_hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Morning and evening demand profiles for one day, each `[t]`."""
        spec = self.spec
        weekday = _dt.datetime.fromtimestamp(spec.start_unix + day * DAY_SECONDS, tz=_dt.timezone.utc).weekday()
        rng = np.random.default_rng([spec.seed, _STREAM_DAY, day])
        factor = rng.lognormal(0.0, 0.06)
        holiday = weekday < 5 and rng.random() < 0.02
        if weekday >= 5 or holiday:
            midday = 0.42 * np.exp(-(((tod_hours - 13.5) / 2.8) ** 2))
            return factor * midday, factor * midday
        am = np.exp(-(((tod_hours - 7.9) / 1.1) ** 2))
        pm = np.exp(-(((tod_hours - 17.4) / 1.4) ** 2)) * (1.12 if weekday == 4 else 1.0)
        return factor * am, factor * pm

    # ----------------------------------------------------------------- one day
    def day(self, day: int, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray]:
        """Steps `[t0, t1)` (global step indices, all within day `day`)."""
        spec = self.spec
        n, steps = spec.num_nodes, t1 - t0
        spd = spec.steps_per_day
        step_in_day = np.arange(t0, t1) - day * spd
        tod_hours = step_in_day * spec.interval_seconds / 3600.0
        timestamps = spec.start_unix + np.arange(t0, t1, dtype=np.int64) * spec.interval_seconds
        dt = spec.interval_seconds / 300.0  # dynamics are calibrated for 5-minute steps

        # Recurrent congestion: queue length per bottleneck, step by step.
        am, pm = self._demand(day, tod_hours)
        load = self.strength[None, :] * (am[:, None] * self.am_weight + pm[:, None] * self.pm_weight)
        queues = np.empty((steps, self.sources.size))
        q = self.queue
        for k in range(steps):
            excess = load[k] - 1.0
            rate = np.where(excess > 0, self.QUEUE_GROWTH_KM, self.QUEUE_DISCHARGE_KM)
            q = np.clip(q + dt * rate * excess, 0.0, self.queue_max)
            queues[k] = q
        self.queue = q
        congestion = np.zeros((steps, n))
        self._spread(queues, *self.reach, congestion)

        # Incidents of this day and the previous one (a long one spills over midnight).
        for d in (day - 1, day):
            if d >= 0:
                self._add_incidents(d, t0, t1, congestion)

        speed = self.free_speed * (1.0 - congestion * (1.0 - self.jam_ratio))
        speed *= 1.0 + 0.03 * np.sin(2 * math.pi * tod_hours / 24.0)[:, None]  # night is a bit faster
        rng = np.random.default_rng([spec.seed, _STREAM_DAY, day, 1])
        shocks = rng.normal(0.0, 1.0, (steps, n))
        noise = np.empty((steps, n))
        e = self.noise
        for k in range(steps):
            e = 0.8 * e + 0.6 * shocks[k]
            noise[k] = e
        self.noise = e
        speed = np.clip(speed + noise * (1.0 + 2.0 * congestion), 3.0, 85.0)

        out = np.empty((steps, n, spec.channels), dtype=np.float32)
        out[:, :, 0] = speed
        if spec.channels > 1:
            density = 130.0 * np.clip(1.0 - speed / (self.free_speed * 1.05), 0.02, 1.0)  # veh/mile/lane
            flow = density * speed * self.lanes / (3600.0 / spec.interval_seconds)  # vehicles per interval
            out[:, :, 1] = flow
            if spec.channels > 2:
                out[:, :, 2] = np.clip(density / 130.0 * 0.6, 0.0, 1.0)  # occupancy fraction
        if spec.missing:
            self._drop_readings(day, t0, t1, out)
        return timestamps, out

    @classmethod
    def _spread(cls, queues, slot, sensor, dist, congestion) -> None:
        """Congestion `[t, N]` from the queues `[t, sources]` of sources reaching `sensor` at
        `dist` km. Pairs the queue never gets near (front below 0.2%) are skipped: at PeMS
        scale most of the network is free-flowing most of the day."""
        reached = queues.max(axis=0)[slot] > dist - 2.2
        if reached.any():
            _max_by_sensor(cls._front(queues[:, slot[reached]], dist[reached]), sensor[reached], congestion)

    @staticmethod
    def _front(queue_km: np.ndarray, distance_km: np.ndarray) -> np.ndarray:
        """Congestion (0..1) at `distance_km` upstream of a queue of length `queue_km` (soft front)."""
        return np.where(queue_km > 0.05, 1.0 / (1.0 + np.exp(-(queue_km - distance_km) / 0.35)), 0.0)

    def _add_incidents(self, day: int, t0: int, t1: int, congestion: np.ndarray) -> None:
        spec = self.spec
        spd = spec.steps_per_day
        rng = np.random.default_rng([spec.seed, _STREAM_INCIDENTS, day])
        count = rng.poisson(spec.num_nodes / 90.0)  # ~1 incident per sensor per 3 months
        if count == 0:
            return
        sites = rng.integers(0, spec.num_nodes, count)
        start = day * spd + rng.integers(0, spd, count)
        duration = rng.integers(3, 25, count)  # 15 min .. 2 h blocked
        growth = rng.uniform(0.3, 0.9, count)  # km per step while blocked
        qmax = rng.uniform(1.0, 6.0, count)
        active = (start < t1) & (start + duration + 40 > t0)
        if not active.any():
            return
        sites, start, duration, growth, qmax = (a[active] for a in (sites, start, duration, growth, qmax))
        slot, sensor, dist = upstream_reach(self.network, sites, 6.0)
        t = np.arange(t0, t1)[:, None]
        since = t - start[None, :]
        peak = np.minimum(qmax, growth * duration)
        queue = np.where(
            since < 0, 0.0,
            np.where(since < duration, np.minimum(qmax, growth * since),
                     np.maximum(0.0, peak - 0.8 * (since - duration))),
        )
        self._spread(queue, slot, sensor, dist, congestion)

    def _drop_readings(self, day: int, t0: int, t1: int, out: np.ndarray) -> None:
        spec = self.spec
        n, steps = spec.num_nodes, t1 - t0
        rng = np.random.default_rng([spec.seed, _STREAM_MISSING, day])
        missing = rng.random((steps, n)) < 0.001  # single dropped samples
        # Carried-over and new sensor outages (hours) and dead sensors (days).
        starts_per_sensor = rng.random(n) < steps / spec.steps_per_day / 25.0
        dead = rng.random(n) < steps / spec.steps_per_day / 250.0
        new_len = np.where(dead, rng.integers(spec.steps_per_day, 4 * spec.steps_per_day, n),
                           rng.lognormal(math.log(24), 0.9, n).astype(np.int64) + 1)
        new_at = rng.integers(0, steps, n)
        for s in np.flatnonzero(self.outage_left > 0):
            k = min(steps, int(self.outage_left[s]))
            missing[:k, s] = True
            self.outage_left[s] -= k
        for s in np.flatnonzero(starts_per_sensor | dead):
            a = int(new_at[s])
            k = min(steps - a, int(new_len[s]))
            missing[a:a + k, s] = True
            self.outage_left[s] = max(self.outage_left[s], int(new_len[s]) - k)
        # Network-wide gaps (a collection system outage): all sensors at once.
        if self.network_outage_left > 0:
            k = min(steps, self.network_outage_left)
            missing[:k] = True
            self.network_outage_left -= k
        if rng.random() < steps / spec.steps_per_day / 60.0:
            a, length = int(rng.integers(0, steps)), int(rng.integers(6, 37))
            k = min(steps - a, length)
            missing[a:a + k] = True
            self.network_outage_left = length - k
        out[missing] = 0.0

    def blocks(self):
        """Yield `(timestamps [t], signals [t, N, C])` day by day over the whole series."""
        spd = self.spec.steps_per_day
        for day in range(math.ceil(self.spec.num_steps / spd)):
            t0, t1 = day * spd, min((day + 1) * spd, self.spec.num_steps)
            yield self.day(day, t0, t1)


def generate(spec: SynthSpec, out_path, *, compression: str | None = None, progress: bool = True):
    """Generate a dataset and write it to `out_path` (atomically). Returns the path."""
    from tqdm import tqdm

    from pgti.data.format import DatasetWriter

    sim = TrafficSimulator(spec)
    writer = DatasetWriter(
        out_path, node_ids=sim.node_ids, channels=list(CHANNEL_NAMES[: spec.channels]),
        interval_seconds=spec.interval_seconds, edge_index=sim.edge_index, edge_weight=sim.edge_weight,
        name=spec.name, missing_value=0.0, lat=sim.lat, lon=sim.lon, chunk_steps=spec.steps_per_day,
        compression=compression, expected_steps=spec.num_steps,
        attrs={"generator": "pgti.data.synth", "seed": spec.seed, "units": "mph"},
    )
    with writer, tqdm(total=spec.num_steps, unit="step", unit_scale=True, disable=not progress,
                      desc=f"synth {spec.name}", mininterval=1.0) as bar:
        for timestamps, block in sim.blocks():
            writer.append(block, timestamps)
            bar.update(len(timestamps))
    return writer.path
