"""Under mpirun across hosts: where the node-shared signals really live.

Usage: mpi_placement.py DATASET OUT.json. For each placement (bcast and leaders loading of the
whole array, and a partitioned span from the ranks' own window starts) every rank reports
its host, whether its view equals the file's bytes, and the memory mapping that backs the
array in this process (/proc/self/smaps: backing file, device and inode, Rss and Pss). Rank
0 writes the rows of every rank to OUT.json.

Ranks of one host that map the same (device, inode) share one physical copy; the Pss of that
mapping summed over a host's ranks is what the host holds, each page counted once.
"""
import json
import socket
import sys
from pathlib import Path

import numpy as np

from pgti.data.format import read_signals
from pgti.distributed.failfast import abort_on_error
from pgti.distributed.load import load_signals, node_time_span, open_dataset_once
from pgti.distributed.partition import rank_window_starts
from pgti.distributed.world import init_world

TIN, TOUT, BATCH = 12, 12, 8


def mapping_of(address: int) -> dict:
    """The /proc/self/smaps entry that holds `address`: its file, device:inode, Rss and Pss (bytes)."""
    entry = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                if entry is not None:
                    break
                if lo <= address < hi:
                    entry = {"file": head[5] if len(head) > 5 else "", "inode": f"{head[3]}:{head[4]}",
                             "bytes": hi - lo}
            elif entry is not None and head[0] in ("Rss:", "Pss:"):
                entry[head[0][:-1].lower()] = int(head[1]) * 1024
    if entry is None:
        raise RuntimeError(f"no mapping of /proc/self/smaps holds address {address:#x}")
    return entry


def describe(world, shared, truth: np.ndarray) -> dict:
    """Compare with the file (which maps every page into this process), then, once every rank
    of the job has done so, read the mapping: Pss then splits each page among all its holders."""
    array = shared.array
    t0, t1 = shared.attrs["t0"], shared.attrs["t1"]
    row = {"t0": t0, "t1": t1, "nbytes": array.nbytes, "exact": bool(np.array_equal(array, truth[t0:t1]))}
    world.comm.Barrier()
    row["map"] = mapping_of(array.ctypes.data)
    world.comm.Barrier()  # nobody frees the array before every rank has measured it
    return row


def main(path: str, out: str) -> None:
    world = init_world()
    info = open_dataset_once(world, path)
    truth = read_signals(info)  # verification only: the loaders under test never use it
    row = {"rank": world.rank, "host": socket.gethostname(), "node": world.node, "num_nodes": world.num_nodes,
           "local_rank": world.local_rank}
    for mode in ("bcast", "leaders"):
        with load_signals(world, info, mode=mode) as shared:
            row[mode] = describe(world, shared, truth)
    all_starts = np.arange(info.num_steps - TIN - TOUT + 1)
    mine = rank_window_starts(all_starts, world.rank, world.size, BATCH, shuffle="local", drop_last=False)
    span = node_time_span(world, mine, TIN, TOUT)
    with load_signals(world, info, *span) as shared:
        row["partitioned"] = describe(world, shared, truth)
        row["partitioned"]["windows_inside"] = bool(mine.min() >= span[0] and mine.max() + TIN + TOUT <= span[1])
    rows = world.comm.gather(row, root=0)
    if world.is_root:
        Path(out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    with abort_on_error():
        main(*sys.argv[1:])
