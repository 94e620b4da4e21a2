"""pgti.distributed: running on many ranks and nodes with MPI (mpi4py).

  world      `init_world()`: world / node / node-leaders communicators, rank-prefixed logging,
             `device_for`, `configure_threads`, `stdout_is_terminal`.
  failfast   `abort_on_error` (fail fast: one message, no hung ranks), `run_on_root` and
             `raise_if_any_failed` (an error on some ranks raised on all; rank 0 reports it).
  shared     `SharedArray`: one copy of an array per node (MPI shared memory), zero-copy numpy
             and torch views on every local rank.
  load       `load_signals`: the dataset's signals read once (rank 0), broadcast to the node
             leaders, held once per node; per-node time spans; float16 / bfloat16 storage.
  partition  pure functions: each rank's training window starts per epoch (equal batch counts)
             and evaluation shards.

Importing this package (or any of these modules) does not initialise MPI; `init_world()` does.
"""
