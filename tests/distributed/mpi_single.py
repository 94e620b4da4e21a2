"""Without any launcher (mpi4py singleton init): a world of one rank loads a dataset.

Usage: mpi_single.py ok DATASET | mpi_single.py fail. Prints one JSON line.
"""
import hashlib
import json
import sys

from pgti.distributed.failfast import abort_on_error
from pgti.distributed.load import load_signals
from pgti.distributed.world import init_world
from pgti.errors import UserError


def main(what: str, path: str = "") -> None:
    world = init_world()
    with abort_on_error(world):
        if what == "fail":
            raise UserError(f"deliberate single-process {what}ure")
        shared = load_signals(world, path)
        print(json.dumps({"size": world.size, "num_nodes": world.num_nodes, "local_size": world.local_size,
                          "has_leaders_comm": world.leaders_comm is not None,
                          "digest": hashlib.sha1(shared.array).hexdigest()}), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
