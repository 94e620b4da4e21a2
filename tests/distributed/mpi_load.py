"""Under `mpirun -np W` (on one host, across hosts, or PGTI_RANKS_PER_NODE=k simulating nodes): the world,
rank-prefixed logging, small collectives and `load_signals` in every mode, dtype and span.

Usage: mpi_load.py DATASET OUTDIR. Rank 0 writes OUTDIR/result.json (one row per rank);
the log file is OUTDIR/run.log.
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from pgti.data.format import read_signals
from pgti.distributed.failfast import abort_on_error
from pgti.distributed.load import load_signals, node_time_span, open_dataset_once
from pgti.distributed.partition import rank_window_starts
from pgti.distributed.world import init_world, setup_logging

TIN, TOUT, BATCH = 12, 12, 8
# Explicit per-node spans (steps), with gaps between them and out of order.
NODE_SPANS = [(10, 137), (300, 451), (160, 290)]


def digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array)).hexdigest()


def refuses_writes(array: np.ndarray) -> bool:
    if array.size == 0:
        return not array.flags.writeable
    try:
        array[0, 0, 0] = -1.0
    except ValueError:
        return True
    return False


def as_float32(shared) -> np.ndarray:
    if shared.dtype_name == "bfloat16":
        return (shared.array.astype(np.uint32) << 16).view(np.float32)
    return shared.array.astype(np.float32)


def main(path: str, outdir: str) -> None:
    world = init_world()
    log = setup_logging(world, log_file=Path(outdir, "run.log"))
    log.info("info from rank %d", world.rank)
    log.warning("warning from rank %d", world.rank)
    row = {"rank": world.rank, "size": world.size, "local_rank": world.local_rank, "local_size": world.local_size,
           "node": world.node, "num_nodes": world.num_nodes, "is_leader": world.is_leader,
           "has_leaders_comm": world.leaders_comm is not None}

    info = open_dataset_once(world, path)
    truth = read_signals(info)  # verification only: the loader's ranks do not read the file
    step_bytes = info.num_nodes * info.num_channels * 4
    block_bytes = 7 * step_bytes  # many blocks, crossing every span edge

    loads = {}
    for mode in ("bcast", "leaders"):
        for dtype in ("float32", "float16", "bfloat16"):
            with load_signals(world, info, mode=mode, dtype=dtype, block_bytes=block_bytes) as shared:
                values = as_float32(shared)
                loads[f"{mode}/{dtype}"] = {
                    "digest": digest(shared.array), "shape": list(shared.shape),
                    "max_rel_error": float(np.max(np.abs(values - truth) / np.maximum(np.abs(truth), 1e-3))),
                    "refuses_writes": refuses_writes(shared.array)}
    row["loads"] = loads

    # Partitioned placement from the ranks' own window starts ("local" shuffle: fixed blocks).
    all_starts = np.arange(info.num_steps - TIN - TOUT + 1)
    mine = rank_window_starts(all_starts, world.rank, world.size, BATCH, shuffle="local", drop_last=False)
    everyone = [rank_window_starts(all_starts, r, world.size, BATCH, shuffle="local", drop_last=False)
                for r in range(world.size)]
    span = node_time_span(world, mine, TIN, TOUT)
    row["span"] = list(span)
    row["span_from_all"] = list(node_time_span(world, everyone, TIN, TOUT))
    with load_signals(world, info, *span, block_bytes=block_bytes) as shared:
        row["span_rows"] = shared.shape[0]
        row["span_attrs"] = [shared.attrs["t0"], shared.attrs["t1"]]
        row["span_exact"] = bool(np.array_equal(shared.array, truth[span[0]:span[1]]))
        row["windows_inside"] = bool(mine.min() >= span[0] and mine.max() + TIN + TOUT <= span[1])

    # Explicit spans: ranks of a node pass different (overlapping) halves; the node holds the union.
    lo, hi = NODE_SPANS[world.node]
    mid = (lo + hi) // 2
    own = (lo, hi) if world.local_size == 1 else ((lo, mid) if world.local_rank == 0 else (mid - 3, hi))
    explicit = {}
    for mode, dtype in (("bcast", "float32"), ("bcast", "float16"), ("leaders", "float32")):
        with load_signals(world, info, *own, mode=mode, dtype=dtype, block_bytes=block_bytes) as shared:
            explicit[f"{mode}/{dtype}"] = {
                "attrs": [shared.attrs["t0"], shared.attrs["t1"]], "rows": shared.shape[0],
                "exact": bool(np.array_equal(as_float32(shared), truth[lo:hi].astype(shared.dtype).astype(np.float32)))}
    # A node with nothing to hold (node 1 passes an empty span) still takes part.
    empty = (5, 5) if world.node == 1 else (lo, hi)
    with load_signals(world, info, *empty, block_bytes=block_bytes) as shared:
        held = truth[shared.attrs["t0"]:shared.attrs["t1"]]
        explicit["empty_on_node1"] = {"rows": shared.shape[0], "exact": bool(np.array_equal(shared.array, held))}
    row["explicit"] = explicit
    row["open_arrays_left"] = len(world._shared)

    rows = world.comm.gather(row, root=0)
    if world.is_root:
        Path(outdir, "result.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    with abort_on_error():
        main(*sys.argv[1:])
