"""A synthetic road network: freeway corridors, sensors along them, and DCRNN's graph.

Sensors sit along both directions of a set of straight freeway corridors laid across a square
region, about one every `spacing_km`. Traffic flows from one sensor to the next downstream
one; where two corridors cross, interchange ramps link each direction of one corridor to both
directions of the other. Edge weights follow DCRNN's `gen_adj_mx.py`: a Gaussian kernel of the
road (driving) distance, `w = exp(-(d / sigma)^2)`, kept where `w >= 0.1`, self-loops included
(DCRNN's adjacency has a unit diagonal). Distances come from a bounded Dijkstra along the
directed road links, so building the graph is O(N * neighbours), not O(N^2).
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

KERNEL_THRESHOLD = 0.1


@dataclass
class RoadNetwork:
    """Sensors and their directed road links.

    xy_km       float64 [N, 2]  position in a local km frame
    corridor    int64   [N]     corridor-direction id of each sensor
    position_km float64 [N]     distance along the corridor direction
    links       list of (upstream, downstream, km)  directed road segments
    junction    bool    [N]     sensor just downstream of a merge (bottleneck candidate)
    """

    xy_km: np.ndarray
    corridor: np.ndarray
    position_km: np.ndarray
    links: list[tuple[int, int, float]]
    junction: np.ndarray

    @property
    def num_nodes(self) -> int:
        return int(self.xy_km.shape[0])

    def downstream(self) -> list[list[tuple[int, float]]]:
        out: list[list[tuple[int, float]]] = [[] for _ in range(self.num_nodes)]
        for a, b, d in self.links:
            out[a].append((b, d))
        return out

    def upstream(self) -> list[list[tuple[int, float]]]:
        out: list[list[tuple[int, float]]] = [[] for _ in range(self.num_nodes)]
        for a, b, d in self.links:
            out[b].append((a, d))
        return out


def _segment_intersection(p, p2, q, q2):
    """Fractions (s, u) along segments p->p2 and q->q2 where they cross, or None."""
    r = p2 - p
    s = q2 - q
    denom = r[0] * s[1] - r[1] * s[0]
    if abs(denom) < 1e-12:
        return None
    qp = q - p
    t = (qp[0] * s[1] - qp[1] * s[0]) / denom
    u = (qp[0] * r[1] - qp[1] * r[0]) / denom
    if 0.0 < t < 1.0 and 0.0 < u < 1.0:
        return t, u
    return None


def build_road_network(num_nodes: int, rng: np.random.Generator, spacing_km: float = 0.8) -> RoadNetwork:
    """Lay out `num_nodes` sensors on two-direction corridors crossing a square region."""
    if num_nodes < 2:
        raise ValueError("a road network needs at least 2 sensors")
    pairs = max(1, round(math.sqrt(num_nodes / 8.0)))  # corridors; each has 2 directions
    per_direction = np.full(2 * pairs, num_nodes // (2 * pairs))
    per_direction[: num_nodes - per_direction.sum()] += 1
    length = np.maximum(per_direction.reshape(pairs, 2).max(axis=1) * spacing_km, spacing_km)
    side = float(length.max())
    # Corridor centre lines: random chords through the region, alternating roughly E-W / N-S.
    ends = []
    for c in range(pairs):
        angle = rng.uniform(-0.35, 0.35) + (math.pi / 2 if c % 2 else 0.0)
        centre = rng.uniform(0.25 * side, 0.75 * side, size=2)
        half = 0.5 * length[c] * np.array([math.cos(angle), math.sin(angle)])
        ends.append((centre - half, centre + half))

    xy, corridor, position = [], [], []
    first_of = []
    for c in range(pairs):
        a, b = ends[c]
        for direction in range(2):
            cid = 2 * c + direction
            n = int(per_direction[cid])
            first_of.append(len(xy))
            start, stop = (a, b) if direction == 0 else (b, a)
            # Jittered spacing: real detector stations are irregular.
            gaps = rng.uniform(0.6, 1.4, size=n) * spacing_km * (length[c] / (n * spacing_km))
            pos = np.cumsum(gaps) - gaps[0] / 2
            normal = np.array([-(stop - start)[1], (stop - start)[0]]) / max(np.linalg.norm(stop - start), 1e-9)
            for k in range(n):
                frac = min(pos[k] / length[c], 1.0)
                xy.append(start + frac * (stop - start) + 0.015 * normal)  # carriageways 30 m apart
                corridor.append(cid)
                position.append(pos[k])
    xy = np.asarray(xy, dtype=np.float64)
    corridor = np.asarray(corridor, dtype=np.int64)
    position = np.asarray(position, dtype=np.float64)
    first_of.append(num_nodes)

    links: list[tuple[int, int, float]] = []
    for cid in range(2 * pairs):
        lo, hi = first_of[cid], first_of[cid + 1]
        for i in range(lo, hi - 1):
            links.append((i, i + 1, float(position[i + 1] - position[i])))

    junction = np.zeros(num_nodes, dtype=bool)

    def sensor_around(cid: int, at_km: float) -> tuple[int | None, int | None]:
        lo, hi = first_of[cid], first_of[cid + 1]
        k = lo + int(np.searchsorted(position[lo:hi], at_km))
        before = k - 1 if k - 1 >= lo else None
        after = k if k < hi else None
        return before, after

    for c1 in range(pairs):
        for c2 in range(c1 + 1, pairs):
            hit = _segment_intersection(*ends[c1], *ends[c2])
            if hit is None:
                continue
            t1, t2 = hit
            for d1 in range(2):
                cid1 = 2 * c1 + d1
                at1 = (t1 if d1 == 0 else 1 - t1) * length[c1]
                for d2 in range(2):
                    cid2 = 2 * c2 + d2
                    at2 = (t2 if d2 == 0 else 1 - t2) * length[c2]
                    # ramp: last sensor before the crossing on cid1 -> first after it on cid2
                    b1, _ = sensor_around(cid1, at1)
                    _, a2 = sensor_around(cid2, at2)
                    if b1 is None or a2 is None:
                        continue
                    d = (at1 - position[b1]) + (position[a2] - at2) + 0.3  # ramp length
                    links.append((b1, a2, float(d)))
                    junction[a2] = True
    return RoadNetwork(xy_km=xy, corridor=corridor, position_km=position, links=links, junction=junction)


def bounded_road_distances(
    adjacency: list[list[tuple[int, float]]], radius_km: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (source, target, road distance) pairs with distance <= radius (Dijkstra per source)."""
    src, dst, dist = [], [], []
    for s in range(len(adjacency)):
        for u, d in _reachable(adjacency, s, radius_km):
            src.append(s)
            dst.append(u)
            dist.append(d)
    return np.asarray(src, np.int64), np.asarray(dst, np.int64), np.asarray(dist, np.float64)


def _reachable(adjacency: list[list[tuple[int, float]]], source: int, radius_km: float):
    """Dijkstra from `source`: yields `(node, road distance)` for every node within `radius_km`,
    nearest first (the source itself at distance 0)."""
    best = {source: 0.0}
    heap = [(0.0, source)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > best.get(u, math.inf):
            continue
        yield u, d
        for v, w in adjacency[u]:
            nd = d + w
            if nd <= radius_km and nd < best.get(v, math.inf):
                best[v] = nd
                heapq.heappush(heap, (nd, v))


def gaussian_kernel_graph(network: RoadNetwork, sigma_km: float) -> tuple[np.ndarray, np.ndarray]:
    """DCRNN's thresholded Gaussian kernel over road distance: `edge_index [2, E]`, `edge_weight [E]`.

    An edge i -> j exists when j is downstream of i within the road distance where
    `exp(-(d/sigma)^2) >= 0.1`, i.e. `d <= sigma * sqrt(ln 10)`; self-loops have weight 1.
    """
    radius = sigma_km * math.sqrt(-math.log(KERNEL_THRESHOLD))
    src, dst, dist = bounded_road_distances(network.downstream(), radius)
    weight = np.exp(-np.square(dist / sigma_km))
    keep = weight >= KERNEL_THRESHOLD
    order = np.lexsort((dst[keep], src[keep]))
    edge_index = np.stack([src[keep][order], dst[keep][order]])
    return edge_index, weight[keep][order].astype(np.float32)


def upstream_reach(network: RoadNetwork, sources: np.ndarray, max_km: float):
    """For each source sensor, the sensors upstream of it within `max_km` of road.

    Returns flat arrays `(source_slot [P], sensor [P], distance_km [P])`, where `source_slot`
    indexes `sources`. Congestion that starts at a source spreads to these sensors.
    """
    up = network.upstream()
    slot, sensor, dist = [], [], []
    for k, s in enumerate(np.asarray(sources).tolist()):
        for u, d in _reachable(up, s, max_km):
            slot.append(k)
            sensor.append(u)
            dist.append(d)
    return np.asarray(slot, np.int64), np.asarray(sensor, np.int64), np.asarray(dist, np.float64)
