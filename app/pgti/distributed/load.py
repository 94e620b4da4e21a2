"""Read a dataset's signals into node-shared memory: one copy per node, one reader per run.

`load_signals(world, info)` returns a sealed `SharedArray` `[t1 - t0, N, C]` holding steps
[t0, t1) of `/signals` on every rank of every node (`shared.attrs["t0"]`, `["t1"]` say which).

Modes
  "bcast"    (default) rank 0 alone opens the HDF5 file. It reads blocks along time (at most
             `block_bytes` of float32 each, far below MPI's 2 GiB count limit) and broadcasts
             each block over the node-leaders communicator (buffer `Bcast`, no pickling).
             Every leader writes its block into its node's shared array: data crosses the
             network once per node; the file is opened by one process. A block that lies
             inside the receiving node's span is read / received straight into the shared
             array (rank 0 reads into its own node's array: no extra copy); otherwise it goes
             to a staging buffer of one block and the overlap is copied.
  "leaders"  every node leader reads its own span from the file (parallel file systems).

Per-node spans (partitioned placement). Ranks may pass different [t0, t1): each node holds
the smallest span covering its ranks' spans, gaps included (see `node_time_span`). In
"bcast" mode the leaders' spans are allgathered; rank 0 reads the union of all nodes' spans
(merged intervals, gaps between them skipped) in blocks, every leader receives every block
and keeps the part that intersects its span. Memory per node is its own span; every node
receives the whole union (simple and correct, and equal to the whole array in the common case
of full spans).

Storage dtype: "float32" (exact), "float16" or "bfloat16" (half the memory; converted per
block by the reader before the broadcast, so the network carries half the bytes too).
"bfloat16" is stored as uint16 bits; `shared.tensor()` views it as torch.bfloat16.

Errors. `open_dataset_once` validates the file on rank 0 and broadcasts the metadata (other
ranks never touch the file in "bcast" mode). Any failure, on rank 0 or on a leader, reaches
every rank as the same exception (a `UserError` stays one): under `abort_on_error` rank 0
prints it once and every rank exits with status 2 (1 for unexpected errors). No rank hangs.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Sequence

import numpy as np

from pgti.data.format import DatasetInfo, open_dataset, read_signals
from pgti.distributed.failfast import raise_if_any_failed, run_on_root
from pgti.distributed.shared import SharedArray
from pgti.errors import UserError

if TYPE_CHECKING:
    from pgti.distributed.world import World

LOAD_MODES = ("bcast", "leaders")
STORAGE_DTYPES = ("float32", "float16", "bfloat16")
DEFAULT_BLOCK_BYTES = 256 << 20
_MAX_BLOCK_BYTES = 1 << 30  # a block's byte count must stay below MPI's 2**31 - 1 element limit
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def open_dataset_once(world: "World", path: str | os.PathLike) -> DatasetInfo:
    """`open_dataset(path)` on rank 0, metadata broadcast to all ranks (pickled; graph and
    timestamps included). A bad file raises the same UserError on every rank."""
    return run_on_root(world, open_dataset, path)


def node_time_span(world: "World", starts_per_rank, input_steps: int, output_steps: int) -> tuple[int, int]:
    """The steps [t0, t1) the ranks of this node need: t0 = their smallest window start,
    t1 = their largest start + input_steps + output_steps (exclusive end). (0, 0) when no rank
    of the node has a window. Collective over the world (an allgather of two numbers).

    starts_per_rank  this rank's window starts, int64 [S_r] (steps), or a sequence of every
                     rank's starts (index = world rank; e.g. from the pure functions of
                     `pgti.distributed.partition`, which any rank can compute for all ranks).
    Pass every start the rank will ever use (training share of all epochs, eval shards).
    """
    window = int(input_steps) + int(output_steps)
    per_rank = _per_rank_starts(starts_per_rank, world.size)
    if per_rank is not None:
        node_of_rank = world.comm.allgather(world.node)
        mine = [np.asarray(per_rank[r]) for r in range(world.size) if node_of_rank[r] == world.node]
        return _span_of([(int(s.min()), int(s.max())) for s in mine if s.size], window)
    starts = np.asarray(starts_per_rank, dtype=np.int64).reshape(-1)
    own = (int(starts.min()), int(starts.max())) if starts.size else None
    gathered = world.comm.allgather((world.node, own))
    return _span_of([mm for node, mm in gathered if node == world.node and mm is not None], window)


def _per_rank_starts(value, world_size: int):
    if isinstance(value, (list, tuple)) and len(value) == world_size and value \
            and all(np.ndim(v) == 1 for v in value):
        return value
    return None


def _span_of(min_max: list[tuple[int, int]], window: int) -> tuple[int, int]:
    if not min_max:
        return 0, 0
    return min(lo for lo, _ in min_max), max(hi for _, hi in min_max) + window


def load_signals(world: "World", info: DatasetInfo | str | os.PathLike, t0: int = 0, t1: int | None = None, *,
                 mode: str = "bcast", block_bytes: int = DEFAULT_BLOCK_BYTES,
                 dtype: str = "float32") -> SharedArray:
    """Fill and return a node-shared `[t1 - t0, N, C]` array of steps [t0, t1) (collective
    over the world; see the module docstring).

    info         DatasetInfo (e.g. from `open_dataset_once`) or a path (opened once on rank 0).
    t0, t1       steps this rank needs; the node holds the smallest span covering its ranks'
                 spans (empty spans ignored). Default: the whole series.
    mode         "bcast" | "leaders".
    block_bytes  float32 bytes read per block (at least one step).
    dtype        storage: "float32" | "float16" | "bfloat16".
    """
    if not isinstance(info, DatasetInfo):
        info = open_dataset_once(world, info)
    if mode not in LOAD_MODES:
        raise UserError(f"load mode {mode!r} is not one of {', '.join(LOAD_MODES)}")
    if dtype not in STORAGE_DTYPES:
        raise UserError(f"storage dtype {dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")
    t1 = info.num_steps if t1 is None else int(t1)
    if not 0 <= t0 <= t1 <= info.num_steps:
        raise ValueError(f"time span [{t0}, {t1}) outside the dataset's [0, {info.num_steps})")

    span = _union([tuple(s) for s in world.node_comm.allgather((int(t0), t1))])
    shared = SharedArray(world, (span[1] - span[0], info.num_nodes, info.num_channels), dtype)
    shared.attrs.update(t0=span[0], t1=span[1], dataset=str(info.path), storage_dtype=dtype)
    block_steps = _block_steps(info, block_bytes)

    error = None
    try:
        if mode == "bcast" and world.is_leader:
            spans = world.leaders_comm.allgather(span)
            error = _fill_by_broadcast(world, info, shared, spans, block_steps)
        elif mode == "leaders" and world.is_leader:
            _check_visible_here(world, info)
            for b0, b1 in _blocks([span], block_steps):
                _read_converted(info, b0, b1, shared.array[b0 - span[0]:b1 - span[0]])
    except Exception as exc:  # noqa: BLE001  (reported to every rank below)
        error = exc
    try:
        raise_if_any_failed(world, error)  # also a point every leader has passed after filling
    except BaseException:
        shared.free()
        raise
    return shared.seal()


def _check_visible_here(world: "World", info: DatasetInfo) -> None:
    """A leader on another host than rank 0 reads the file too: say so when it is not there."""
    if not os.path.exists(info.path):
        import socket

        raise UserError(f"{info.path}: no such file on host {socket.gethostname()} (rank {world.rank}, node "
                        f"{world.node}), though rank 0 opened it: with data.load = 'leaders' every node reads "
                        "the dataset, so it must be on a filesystem every node sees (shared scratch or home, "
                        "not a node's /tmp); or use data.load = 'bcast' (rank 0 reads, sends it to the nodes)")


def _fill_by_broadcast(world: "World", info: DatasetInfo, shared: SharedArray,
                       spans: list[tuple[int, int]], block_steps: int) -> BaseException | None:
    """Leaders only. Rank 0 reads each block of the spans' union, every leader receives it and
    keeps its overlap with its own span. Returns this leader's error, or None. Any leader's
    error stops every leader at the same block (an allreduce per block), so none is left
    waiting in a Bcast; the caller then reports the error to all ranks."""
    from mpi4py import MPI

    leaders = world.leaders_comm
    lo, hi = spans[world.node]
    blocks = list(_blocks(_merge(spans), block_steps))
    error: BaseException | None = None
    staging = None  # one block in the storage dtype, for blocks not entirely inside [lo, hi)
    try:
        if any(not (lo <= b0 and b1 <= hi) for b0, b1 in blocks):
            staging = np.empty((block_steps,) + shared.shape[1:], dtype=shared.dtype)
    except Exception as exc:  # noqa: BLE001
        error = exc
    for b0, b1 in blocks:
        inside = lo <= b0 and b1 <= hi
        target = shared.array[b0 - lo:b1 - lo] if inside else (None if staging is None else staging[:b1 - b0])
        if world.is_root and error is None:
            try:
                _read_converted(info, b0, b1, target)
            except Exception as exc:  # noqa: BLE001
                error = exc
        # One small allreduce per (large) block: a failure anywhere stops all leaders here.
        if leaders.allreduce(error is not None, op=MPI.LOR):
            break
        leaders.Bcast([target.reshape(-1).view(np.uint8), MPI.BYTE], root=0)
        if not inside:
            c0, c1 = max(b0, lo), min(b1, hi)
            try:
                if c1 > c0:
                    shared.array[c0 - lo:c1 - lo] = target[c0 - b0:c1 - b0]
            except Exception as exc:  # noqa: BLE001
                error = exc
    return error


def _read_converted(info: DatasetInfo, b0: int, b1: int, out: np.ndarray) -> None:
    """Read steps [b0, b1) into `out`: float32 directly (read_direct); float16 / bfloat16 bits
    through a temporary float32 block, converted with round-to-nearest-even."""
    if out.dtype == np.float32:
        read_signals(info, b0, b1, out=out)
        return
    block = read_signals(info, b0, b1)
    if out.dtype == np.float16:
        peak = float(np.abs(block).max(initial=0.0))
        if peak > _FLOAT16_MAX:
            raise UserError(f"{info.path}: /signals: values up to {peak:g} in steps [{b0}, {b1}) exceed "
                            f"float16's range ({_FLOAT16_MAX:g}); store as bfloat16 or float32")
        np.copyto(out, block, casting="same_kind")
    else:
        out[...] = float32_to_bfloat16_bits(block)


def float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16, same shape) of finite float32 values, rounded to nearest
    even as torch's `.to(torch.bfloat16)` does. Pure numpy: the loader does not need torch."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounding = ((bits >> 16) & 1) + np.uint32(0x7FFF)
    return ((bits + rounding) >> 16).astype(np.uint16)


def _block_steps(info: DatasetInfo, block_bytes: int) -> int:
    """Steps per block: as many as fit in block_bytes of float32 (at least one), rounded down
    to whole HDF5 chunks when a block holds several."""
    step_bytes = max(1, info.num_nodes * info.num_channels * 4)
    steps = max(1, min(int(block_bytes), _MAX_BLOCK_BYTES) // step_bytes)
    chunk = info.chunk_steps or 0
    if chunk and steps > chunk:
        steps -= steps % chunk
    return steps


def _union(spans: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """Smallest span covering the non-empty spans; (0, 0) if all are empty."""
    full = [(a, b) for a, b in spans if b > a]
    return (min(a for a, _ in full), max(b for _, b in full)) if full else (0, 0)


def _merge(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint intervals covering the non-empty spans (gaps between nodes are not read)."""
    merged: list[list[int]] = []
    for a, b in sorted((a, b) for a, b in spans if b > a):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _blocks(intervals: Sequence[tuple[int, int]], block_steps: int):
    """[b0, b1) blocks of the intervals, cut on the global grid of multiples of block_steps
    (chunk-aligned reads), never longer than block_steps."""
    for a, b in intervals:
        start = a
        while start < b:
            stop = min(b, (start // block_steps + 1) * block_steps)
            yield start, stop
            start = stop
