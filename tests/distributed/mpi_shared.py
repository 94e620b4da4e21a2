"""Under `mpirun -np W` on one node: the loaded signals are held once per node.

Usage: mpi_shared.py DATASET OUTDIR. Measures the summed PSS (proportional set size: shared
pages divided among the processes mapping them, from /proc/self/smaps_rollup) of all ranks
before loading, after every rank has read the whole node-shared array, and after every rank
has made its own private copy (what a per-rank loader does). Also checks the views (read-only,
aligned, torch without warnings) and `device_for`. Rank 0 writes OUTDIR/result.json.
"""
import hashlib
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch  # imported before the baseline so its memory is not counted as growth

from pgti.distributed.failfast import abort_on_error
from pgti.distributed.load import load_signals, open_dataset_once
from pgti.distributed.world import device_for, init_world
from pgti.errors import UserError


def pss_kib() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise RuntimeError("no Pss line in /proc/self/smaps_rollup")


def refuses_writes(array: np.ndarray) -> bool:
    try:
        array[0, 0, 0] = -1.0
    except ValueError:
        return True
    return False


def main(path: str, outdir: str) -> None:
    world = init_world()
    info = open_dataset_once(world, path)
    world.comm.Barrier()
    before = pss_kib()

    shared = load_signals(world, info)
    digest = hashlib.sha1(shared.array).hexdigest()  # reads (maps) every page on every rank
    world.comm.Barrier()
    with_shared = pss_kib()

    private_copy = shared.array.copy()
    private_copy[0, 0, 0] = 1.0  # written: a real private copy
    world.comm.Barrier()
    with_copies = pss_kib()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tensor = shared.tensor()
    try:
        device_for(world, "cuda")
        cuda_refused = torch.cuda.is_available()
    except UserError:
        cuda_refused = True
    row = {
        "rank": world.rank, "local_rank": world.local_rank, "local_size": world.local_size,
        "before": before, "with_shared": with_shared, "with_copies": with_copies,
        "nbytes": shared.nbytes, "digest": digest,
        "aligned64": shared.array.ctypes.data % 64 == 0,
        "refuses_writes": refuses_writes(shared.array),
        "tensor_warnings": [str(w.message) for w in caught],
        "tensor_shares_memory": tensor.data_ptr() == shared.array.ctypes.data,
        "tensor_values_match": bool(np.array_equal(tensor[:100].numpy(), shared.array[:100])),
        "device": str(device_for(world)), "cuda_refused_or_available": cuda_refused,
    }
    del tensor, private_copy
    shared.free()
    row["freed"] = shared.freed and not world._shared
    rows = world.comm.gather(row, root=0)
    if world.is_root:
        Path(outdir, "result.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    with abort_on_error():
        main(*sys.argv[1:])
