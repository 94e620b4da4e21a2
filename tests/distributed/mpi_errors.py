"""Under `mpirun -np 3`: one failure must end every rank quickly with one message.

Usage: mpi_errors.py SCENARIO DATASET
  raise-on-rank-1    rank 1 raises a RuntimeError while ranks 0 and 2 wait in a Barrier
  bad-path-on-rank-1 rank 1 alone is given a missing file (UserError) while the others wait
  bad-file           every rank loads a missing file: rank 0 finds out, all ranks report it
  bad-values         the file has a NaN late in the series: rank 0 fails mid-broadcast
  bad-values-leader  "leaders" mode: only the last node's leader reads the NaN
"""
import sys

from pgti.data.format import open_dataset
from pgti.distributed.failfast import abort_on_error
from pgti.distributed.load import load_signals
from pgti.distributed.world import init_world


def main(scenario: str, path: str) -> None:
    world = init_world()
    with abort_on_error(world):
        if scenario == "raise-on-rank-1":
            if world.rank == 1:
                raise RuntimeError(f"deliberate failure on rank {world.rank}")
        elif scenario == "bad-path-on-rank-1":
            open_dataset(path + ".missing" if world.rank == 1 else path)
        elif scenario == "bad-file":
            load_signals(world, path + ".missing")
        elif scenario == "bad-values":
            load_signals(world, path, block_bytes=1)
        elif scenario == "bad-values-leader":
            last_node_reads_all = world.node == world.num_nodes - 1
            load_signals(world, path, 0, None if last_node_reads_all else 100, mode="leaders", block_bytes=1)
        else:
            raise SystemExit(f"unknown scenario {scenario}")
        world.comm.Barrier()  # without fail-fast the healthy ranks would wait here forever
    print(f"rank {world.rank} finished", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
