"""Run under `mpirun -np W`: Horovod allreduce and broadcast through MPI (mpi4py first)."""
import json

from mpi4py import MPI  # before horovod: it initialises MPI, and Horovod shares its communicator

# isort: split
import horovod.torch as hvd
import torch

hvd.init(comm=MPI.COMM_WORLD)
rank, size = hvd.rank(), hvd.size()
summed = hvd.allreduce(torch.full((3,), float(rank + 1)), op=hvd.Sum, name="sum")
averaged = hvd.allreduce(torch.full((3,), float(rank + 1)), op=hvd.Average, name="avg")
params = {"w": torch.full((2, 2), float(rank * 10 + 1))}
hvd.broadcast_parameters(params, root_rank=0)
print(json.dumps({"rank": rank, "size": size, "mpi_built": hvd.mpi_built(), "sum": summed.tolist(),
                  "avg": averaged.tolist(), "w": params["w"].flatten().tolist()}), flush=True)
