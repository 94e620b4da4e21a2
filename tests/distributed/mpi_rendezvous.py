"""Under `mpirun -np 2`: where the DDP engine's ranks meet (pgti.distributed.rendezvous).

Usage: mpi_rendezvous.py. Every rank prints `RDV {json}`: the address, port and reason chosen,
and the gloo interface it set. Errors end every rank with one line (abort_on_error).
"""
import json
import os

from pgti.distributed.failfast import abort_on_error
from pgti.distributed.rendezvous import rendezvous
from pgti.distributed.world import init_world

world = init_world()
with abort_on_error(world):
    address, port, how = rendezvous(world, "gloo")
    print("RDV " + json.dumps({"rank": world.rank, "address": address, "port": port, "how": how,
                               "ifname": os.environ.get("GLOO_SOCKET_IFNAME")}), flush=True)
