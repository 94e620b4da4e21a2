"""Allreduce latency per engine for given float32 tensor sizes; run under `mpirun -np W`.

    mpirun -np 2 python -m pgti.bench.allreduce_worker --counts 150,372353 --repeats 50

Every rank initialises MPI (mpi4py), Horovod (`hvd.init(comm=COMM_WORLD)`, when installed) and
torch.distributed with gloo (the DDP engine's own rendezvous, pgti.distributed.rendezvous),
then times, interleaved round by
round so that a busy spell on a shared machine hits every engine alike:

  mpi4py    comm.Allreduce(IN_PLACE, float32 numpy array)     (the MPI library itself)
  horovod   hvd.allreduce_(float32 tensor, op=Sum)            (what dist.engine=horovod runs)
  gloo      torch.distributed.all_reduce(float32 tensor)      (what dist.engine=ddp runs on CPU)

A sample is the mean of `--inner` back-to-back allreduces after a barrier; rank 0 prints one
JSON line `PGTI_ALLREDUCE {...}` with every sample and the median per (engine, count).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time

ENGINES = ("mpi4py", "horovod", "gloo")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", required=True, help="comma-separated float32 element counts")
    parser.add_argument("--repeats", type=int, default=50, help="samples per engine and count")
    parser.add_argument("--inner", type=int, default=10, help="allreduces per sample")
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    engines = [e for e in args.engines.split(",") if e]

    import numpy as np
    import torch
    from mpi4py import MPI

    from pgti.distributed.world import init_world

    torch.set_num_threads(1)
    world = init_world()
    comm = world.comm
    rank, size = comm.Get_rank(), comm.Get_size()
    hvd = None
    if "horovod" in engines:
        if importlib.util.find_spec("horovod") is None:
            engines.remove("horovod")
        else:
            import horovod.torch as hvd

            hvd.init(comm=comm)
    if "gloo" in engines:
        import torch.distributed as dist

        from pgti.distributed.rendezvous import rendezvous

        host, port, _ = rendezvous(world, "gloo")
        dist.init_process_group("gloo", init_method=f"tcp://{host}:{port}", rank=rank, world_size=size)

    buffers = {c: (np.ones(c, dtype=np.float32), torch.ones(c, dtype=torch.float32)) for c in counts}

    def once(engine: str, count: int) -> None:
        array, tensor = buffers[count]
        if engine == "mpi4py":
            comm.Allreduce(MPI.IN_PLACE, array, op=MPI.SUM)
        elif engine == "horovod":
            hvd.allreduce_(tensor, op=hvd.Sum, name=f"bench.{count}")
        else:
            torch.distributed.all_reduce(tensor)

    for engine in engines:  # warm up: connections, Horovod's first negotiation, buffers
        for count in counts:
            for _ in range(3):
                once(engine, count)
    samples = {(e, c): [] for e in engines for c in counts}
    for _ in range(args.repeats):
        for engine in engines:
            for count in counts:
                comm.Barrier()
                began = time.perf_counter()
                for _ in range(args.inner):
                    once(engine, count)
                samples[(engine, count)].append((time.perf_counter() - began) / args.inner)
    if rank == 0:
        rows = [{"engine": e, "count": c, "bytes": 4 * c, "ranks": size, "samples_s": s,
                 "median_s": statistics.median(s), "min_s": min(s)} for (e, c), s in samples.items()]
        print("PGTI_ALLREDUCE " + json.dumps({"ranks": size, "inner": args.inner, "repeats": args.repeats,
                                              "threads": 1, "load_average": os.getloadavg()[0], "rows": rows}),
              flush=True)
    if "gloo" in engines:
        torch.distributed.destroy_process_group()
    if hvd is not None:
        hvd.shutdown()


if __name__ == "__main__":
    main()
