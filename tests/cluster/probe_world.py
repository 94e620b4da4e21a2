"""Under mpirun: each rank's view of the world and of Horovod, one JSON row per rank on
stdout (`PROBE {...}`). Usage: probe_world.py [--horovod]"""
import json
import socket
import sys

from pgti.distributed.world import init_world

world = init_world()
row = {"rank": world.rank, "host": socket.gethostname(), "node": world.node, "num_nodes": world.num_nodes,
       "local_rank": world.local_rank, "local_size": world.local_size, "leader": world.is_leader}
if "--horovod" in sys.argv:
    import horovod.torch as hvd

    hvd.init(comm=world.comm)
    row.update(hvd_local_size=hvd.local_size(), hvd_cross_size=hvd.cross_size(), hvd_cross_rank=hvd.cross_rank())
    hvd.shutdown()
print("PROBE " + json.dumps(row), flush=True)
