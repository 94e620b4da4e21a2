"""The MPI world of a run: communicators, rank-aware logging, devices, threads, small collectives.

`init_world()` builds (once per process) a `World` from mpi4py's COMM_WORLD:

  comm          all W ranks (COMM_WORLD)
  node_comm     the ranks sharing this node's memory (`Split_type(COMM_TYPE_SHARED)`)
  leaders_comm  local rank 0 of every node, ordered by world rank (None on non-leaders)

It also works with no launcher at all: mpi4py's singleton init gives a world of one rank.
Importing this module does nothing: MPI is initialised by the first `init_world()`.

Testing/debugging knob: `PGTI_RANKS_PER_NODE=k` (or `init_world(ranks_per_node=k)`) splits
the node communicator by `rank // k` instead of by shared-memory domain. Each simulated node
is still genuine shared memory (they all live on one machine), so two ranks on a laptop can
exercise the multi-node code paths: two leaders, the leaders' broadcast, per-node spans.

Errors on any rank end every rank with one message: `abort_on_error`, `run_on_root` and
`raise_if_any_failed` live in `pgti.distributed.failfast` and are importable from here too.

The only global state is `_WORLD`, the cached world (communicator handles).
"""
from __future__ import annotations

import atexit
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

# Re-exported: the training code imports the fail-fast helpers from here.
from pgti.distributed.failfast import abort_on_error, raise_if_any_failed, run_on_root
from pgti.errors import UserError

if TYPE_CHECKING:  # mpi4py is imported lazily: importing it initialises MPI
    import torch
    from mpi4py import MPI

__all__ = ["World", "init_world", "device_for", "setup_logging", "configure_threads",
           "stdout_is_terminal", "abort_on_error", "raise_if_any_failed", "run_on_root", "RANKS_PER_NODE_ENV"]

RANKS_PER_NODE_ENV = "PGTI_RANKS_PER_NODE"
_WORLD: "World | None" = None  # set by init_world(); the module's only global state


@dataclass
class World:
    """One rank's view of the run. Ranks and sizes are counts of MPI processes."""

    comm: "MPI.Intracomm" = field(repr=False)  # COMM_WORLD
    node_comm: "MPI.Intracomm" = field(repr=False)  # ranks of this node (shared memory)
    leaders_comm: "MPI.Intracomm | None" = field(repr=False)  # node leaders; None on non-leaders
    rank: int  # in comm, 0..size-1
    size: int  # W
    local_rank: int  # in node_comm, 0..local_size-1
    local_size: int
    node: int  # this node's index, 0..num_nodes-1 (= rank of its leader in leaders_comm)
    num_nodes: int
    _shared: list = field(default_factory=list, repr=False)  # SharedArrays to free on close()
    _closed: bool = field(default=False, repr=False)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def is_leader(self) -> bool:
        """Local rank 0: owns the node's shared arrays and talks on leaders_comm."""
        return self.local_rank == 0

    @property
    def prefix(self) -> str:
        """`[rank 3/8 node 0]`, the prefix of every log line of this rank."""
        return f"[rank {self.rank}/{self.size} node {self.node}]"

    def close(self) -> None:
        """Free the node-shared arrays still open (collective over each node's ranks).

        Called at normal interpreter exit; call it yourself to release memory earlier. Every
        rank of a node must call it (they created the arrays together)."""
        if self._closed:
            return
        self._closed = True
        # Reverse creation order: the same order on every rank of the node (Win.Free is collective).
        for shared in reversed(list(self._shared)):
            shared.free()


def init_world(ranks_per_node: int | None = None) -> World:
    """Build the world once (collective over COMM_WORLD on the first call) and cache it.

    `ranks_per_node` (default: `$PGTI_RANKS_PER_NODE`, else the real shared-memory domains)
    simulates nodes of that many ranks; see the module docstring."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    if size == 1:
        _refuse_foreign_launcher()
    ranks_per_node = _ranks_per_node(ranks_per_node)
    if ranks_per_node is None:
        node_comm = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    else:
        node_comm = comm.Split(color=rank // ranks_per_node, key=rank)
    local_rank, local_size = node_comm.Get_rank(), node_comm.Get_size()
    # key=rank keeps world rank 0 the leader of node 0 and orders nodes by their leaders' ranks.
    leaders_comm = comm.Split(color=0 if local_rank == 0 else MPI.UNDEFINED, key=rank)
    if leaders_comm == MPI.COMM_NULL:
        leaders_comm = None
    node, num_nodes = node_comm.bcast(
        (leaders_comm.Get_rank(), leaders_comm.Get_size()) if leaders_comm is not None else None, root=0)
    _WORLD = World(comm=comm, node_comm=node_comm, leaders_comm=leaders_comm, rank=rank, size=size,
                   local_rank=local_rank, local_size=local_size, node=node, num_nodes=num_nodes)
    # Registered after mpi4py's own exit handler, so it runs first (atexit is LIFO): windows
    # are freed while MPI is still alive.
    atexit.register(_close_at_exit)
    return _WORLD


def _refuse_foreign_launcher() -> None:
    """A world of one rank, though a launcher started several processes: each would be a run of
    its own, all writing into one run directory. torchrun (WORLD_SIZE, LOCAL_RANK) knows nothing
    of MPI; srun without a PMI plugin for this MPI (`--mpi=none`, or a site default without
    PMIx) starts its tasks as MPI singletons. Refused before anything is written: the process
    the launcher numbers 0 says why in one line (UserError, exit 2), the others exit 2 quietly."""
    env = os.environ
    if "OMPI_COMM_WORLD_SIZE" in env or "PMI_SIZE" in env:
        return  # an MPI launcher started this process: one rank is what it asked for
    torchrun = _count(env.get("WORLD_SIZE")) if "LOCAL_RANK" in env else 1
    srun = _count(env.get("SLURM_STEP_NUM_TASKS"))
    if torchrun > 1:
        first = env.get("RANK", "0") == "0"
        message = (f"launched by torchrun (WORLD_SIZE={torchrun}), which starts processes without MPI: each of the "
                   f"{torchrun} would be a one-rank run of its own, all in one run directory; pgti's ranks come "
                   f"from MPI: launch with `mpirun -np {torchrun} pgti ...` (or `srun --mpi=pmix pgti ...` in a "
                   "Slurm job)")
    elif srun > 1:
        first = env.get("SLURM_PROCID", "0") == "0"
        message = (f"srun started {srun} tasks (SLURM_STEP_NUM_TASKS={srun}), but MPI sees each as a world of one "
                   "rank: srun ran without a PMI plugin for this MPI (--mpi=none, or a site default without PMIx); "
                   f"launch with `srun --mpi=pmix ...` (`srun --mpi=list` shows the plugins) or `mpirun -np {srun} ...`")
    else:
        return
    if not first:
        raise SystemExit(2)
    raise UserError(message)


def _count(text: str | None) -> int:
    try:
        return int(text or 1)
    except ValueError:
        return 1


def _ranks_per_node(value: int | None) -> int | None:
    text = os.environ.get(RANKS_PER_NODE_ENV, "") if value is None else str(value)
    if not text.strip():
        return None
    try:
        ranks = int(text)
    except ValueError:
        ranks = 0
    if ranks < 1:
        raise UserError(f"{RANKS_PER_NODE_ENV}={text!r} must be a positive integer (ranks per simulated "
                        "node, a testing knob); unset it to use the real nodes")
    return ranks


def _close_at_exit() -> None:
    world = _WORLD
    if world is None or world._closed:
        return
    from mpi4py import MPI

    # After an uncaught exception the other ranks may never reach this point: freeing (a
    # collective) could hang, so leave the memory to the operating system.
    if MPI.Is_finalized() or getattr(sys, "last_value", None) is not None:
        return
    world.close()


# --------------------------------------------------------------------------- devices


def device_for(world: World, prefer: str = "auto") -> "torch.device":
    """The torch device of this rank: `cuda:{local_rank % visible}` or `cpu`.

    prefer  "auto": a GPU when one is visible, else the CPU; "cuda": a GPU or a UserError;
            "cpu": the CPU. Visible GPUs are those of `CUDA_VISIBLE_DEVICES` (torch counts
            only those), so a launcher that gives each rank its own GPU yields `cuda:0`.
    """
    import torch

    if prefer not in ("auto", "cuda", "cpu"):
        raise UserError(f"device {prefer!r} is not one of auto, cuda, cpu")
    if prefer == "cpu":
        return torch.device("cpu")
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible == 0:
        if prefer == "cuda":
            raise UserError(f"device 'cuda' was requested but rank {world.rank} sees no GPU "
                            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')}); "
                            "use device 'auto' or 'cpu', or run on GPU nodes")
        return torch.device("cpu")
    return torch.device(f"cuda:{world.local_rank % visible}")


# --------------------------------------------------------------------------- logging


def setup_logging(world: World, verbose: bool = False, log_file: str | os.PathLike | None = None,
                  name: str = "pgti") -> logging.Logger:
    """Configure the `name` logger with `[rank r/W node n]`-prefixed lines; returns it.

    Console (stdout): rank 0 at INFO, the other ranks at WARNING, everyone at DEBUG when
    `verbose`. `log_file` (optional, one per run): rank 0 appends its INFO+ records (DEBUG+
    when `verbose`), the other ranks their WARNING+ records, to the same file. Each record is one append
    (O_APPEND), so lines do not interleave on local, Lustre or GPFS file systems.
    Calling it again replaces the handlers it installed before.
    """
    logger = logging.getLogger(name)
    for handler in [h for h in logger.handlers if getattr(h, "_pgti_handler", False)]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False  # the root logger's handlers would print every line twice
    formatter = logging.Formatter(f"%(asctime)s {world.prefix} %(levelname)s %(name)s: %(message)s",
                                  datefmt="%H:%M:%S")
    quiet_level = logging.INFO if world.is_root else logging.WARNING

    console = logging.StreamHandler(sys.stdout)
    console.setLevel(logging.DEBUG if verbose else quiet_level)
    handlers: list[logging.Handler] = [console]
    if log_file is not None:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        # delay: a rank opens the file at its first record (most ranks never write one).
        to_file = logging.FileHandler(log_file, mode="a", encoding="utf-8", delay=True)
        to_file.setLevel(logging.DEBUG if verbose and world.is_root else quiet_level)
        handlers.append(to_file)
    for handler in handlers:
        handler.setFormatter(formatter)
        handler._pgti_handler = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger


def configure_threads(world: World) -> int:
    """Give each rank its share of the node's cores for torch's intra-op threads.

    torch defaults to one thread per core in every process; with several ranks per node that
    oversubscribes the cores and slows everything (by 5-20x measured on 2 cores). An explicit
    OMP_NUM_THREADS (e.g. from the job script's --cpus-per-task) wins. Returns the count set."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads = max(1, cores // max(1, world.local_size))
    torch.set_num_threads(threads)
    return threads


_LAUNCHERS = ("mpirun", "mpiexec", "orterun", "prterun", "prte", "mpiexec.hydra")


def stdout_is_terminal() -> bool:
    """Whether this process's output reaches a person's terminal.

    Open MPI's mpirun hands every rank a pseudo-terminal for its stdout even when mpirun
    itself writes to a batch log, so a rank's `isatty()` says nothing there: when a launcher
    is found among this process's ancestors, the launcher's own stdout decides (a tty device,
    or not). An Open MPI rank whose launcher is not on this node assumes a log file. Elsewhere
    (no launcher, srun, srun --pty) the process's own `isatty()` is the answer."""
    if not sys.stdout.isatty():
        return False
    pid = os.getppid()
    for _ in range(8):  # a few generations up: mpirun -> (prted) -> rank
        if pid <= 1:
            break
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            if name in _LAUNCHERS:
                return os.readlink(f"/proc/{pid}/fd/1").startswith(("/dev/pts/", "/dev/tty"))
            pid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return "OMPI_COMM_WORLD_SIZE" not in os.environ
