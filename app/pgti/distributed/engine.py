"""Gradient-averaging engines: Horovod (default) and torch DDP.

Both average gradients over all ranks every step, so every rank holds the same parameters:

- `horovod`: `hvd.init(comm=MPI.COMM_WORLD)` after mpi4py; `hvd.DistributedOptimizer` with
  named parameters (allreduce over MPI on CPU, NCCL on GPU when built so), optional fp16
  compression; rank 0's parameters and optimizer state are broadcast at start and after a
  resume.
- `ddp`: `torch.distributed` initialised from the MPI rank and size, gloo on CPU, nccl on
  GPU, and `DistributedDataParallel` (which broadcasts rank 0's parameters when it wraps the
  model). Rank 0's address, a free port and each rank's interface are chosen from the MPI
  launch and broadcast over MPI (`pgti.distributed.rendezvous`), never by resolving hostnames.

The base `Engine` ("local") averages nothing: one process (`pgti bench epoch` trains with it).

Usage (pgti.train.loop, pgti.train.step):
    engine = make_engine(cfg.dist, world, device)
    model, optimizer = engine.prepare(model, optimizer, resumed_optimizer_state)  # wraps; rank 0 state everywhere
    loss.backward(); engine.clip_and_step(optimizer, bare_model.parameters(), max_norm)
`prepare` returns the model to train (DDP wraps it); evaluation and checkpoints use the bare
model, which the caller keeps.
"""
from __future__ import annotations

import importlib.util
import logging
import os

import torch

from pgti.errors import UserError

log = logging.getLogger("pgti")


class Engine:
    """One process, no gradient averaging; the base of the distributed engines."""

    name = "local"

    def __init__(self, world, device: torch.device):
        self.world = world
        self.device = device

    def prepare(self, model, optimizer, optimizer_state: dict | None = None):
        """Wrap for distributed training; load `optimizer_state` (a resume) into the optimizer
        that will step, and make every rank hold rank 0's parameters and optimizer state."""
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        return model, optimizer

    def clip_and_step(self, optimizer, parameters, max_norm: float) -> bool:
        """Clip the global gradient norm to `max_norm` (0: no clipping), then step; a step
        whose gradient norm is not finite is not taken (False)."""
        if not finite_norm_then_clip(parameters, max_norm):
            return False
        optimizer.step()
        return True

    def close(self) -> None:
        pass


def finite_norm_then_clip(parameters, max_norm: float) -> bool:
    """Whether the global norm of the (averaged: the same on every rank) gradients is finite;
    if so, clip them to `max_norm` (0: no clipping). Read-only when not clipping."""
    params = [p for p in parameters if p.grad is not None]
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    return bool(torch.isfinite(norm))


def check_engine_installed(engine: str) -> None:
    """UserError if `dist.engine` names an engine this installation lacks (also for --dry-run)."""
    if engine == "horovod" and importlib.util.find_spec("horovod") is None:
        raise UserError("dist.engine = 'horovod' but Horovod is not installed; build it with `bash env/setup.sh` "
                        "(without --no-horovod), or use torch DDP: --set dist.engine=ddp")


class HorovodEngine(Engine):
    name = "horovod"

    def __init__(self, world, device, fp16_compression: bool = False):
        super().__init__(world, device)
        check_engine_installed(self.name)
        from mpi4py import MPI  # noqa: F401  (first: it initialises MPI, and Horovod then shares its communicator)
        # isort: split
        import horovod.torch as hvd

        hvd.init(comm=world.comm)
        if hvd.size() != world.size or hvd.rank() != world.rank:
            raise RuntimeError(f"horovod sees rank {hvd.rank()}/{hvd.size()}, MPI {world.rank}/{world.size}")
        # Horovod splits the nodes itself (shared memory); PGTI_RANKS_PER_NODE does not reach it.
        log.info("horovod: %d rank(s) per node (local_size), %d node(s) (cross_size)", hvd.local_size(),
                 hvd.cross_size())
        self.hvd = hvd
        self.compression = hvd.Compression.fp16 if fp16_compression else hvd.Compression.none

    def prepare(self, model, optimizer, optimizer_state: dict | None = None):
        hvd = self.hvd
        hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        # Horovod's DistributedOptimizer is a new optimizer over the same parameter groups,
        # with empty state: load a resumed state into it, after wrapping.
        optimizer = hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters(),
                                             compression=self.compression)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
            # Only a resumed optimizer has state. (Horovod initialises an empty one with a
            # zero-gradient step, which would advance Adam's step count by one.)
            hvd.broadcast_optimizer_state(optimizer, root_rank=0)
        return model, optimizer

    def clip_and_step(self, optimizer, parameters, max_norm: float) -> bool:
        # Clip the *averaged* gradients: finish the allreduce first, then step without a second one.
        optimizer.synchronize()
        if not finite_norm_then_clip(parameters, max_norm):
            return False
        with optimizer.skip_synchronize():
            optimizer.step()
        return True


class DDPEngine(Engine):
    name = "ddp"

    def __init__(self, world, device):
        super().__init__(world, device)
        import torch.distributed as dist

        self.dist = dist
        if not dist.is_initialized():
            from pgti.distributed.rendezvous import IFNAME_ENV, rendezvous

            backend = "nccl" if device.type == "cuda" else "gloo"
            host, port, how = rendezvous(world, backend)
            log.info("ddp: %s rendezvous at tcp://%s:%d (%s); rank 0 binds %s=%s", backend, host, port, how,
                     IFNAME_ENV[backend], os.environ.get(IFNAME_ENV[backend], "<unset>"))
            dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=world.rank,
                                    world_size=world.size)

    def prepare(self, model, optimizer, optimizer_state: dict | None = None):
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's parameters and buffers when it wraps the model. A resumed
        # optimizer state is the same file on every rank; rank 0's is broadcast all the same.
        ids = [self.device.index] if self.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=ids)
        if optimizer_state is not None:
            optimizer.load_state_dict(self.world.comm.bcast(optimizer_state if self.world.rank == 0 else None, root=0))
        return wrapped, optimizer

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


def make_engine(dist_cfg, world, device: torch.device) -> Engine:
    if dist_cfg.engine == "horovod":
        return HorovodEngine(world, device, dist_cfg.fp16_compression)
    if dist_cfg.engine == "ddp":
        return DDPEngine(world, device)
    raise UserError(f"dist.engine {dist_cfg.engine!r} is not one of 'horovod', 'ddp'")
