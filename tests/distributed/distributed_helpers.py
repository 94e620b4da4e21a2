"""Helpers of the tests/distributed suites: small datasets and MPI launches run once per session."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from testlib import run_mpi_nodes, write_random_dataset

HERE = Path(__file__).parent
# (ranks, ranks per node or None = all on this host): one node, two nodes of one rank, and a
# node of two ranks next to a node of one. The nodes are real hosts where this machine can make
# them (the `virtual_hosts` fixture), else PGTI_RANKS_PER_NODE simulates them (testlib.run_mpi_nodes).
LOAD_CONFIGS = [(2, None), (2, 1), (3, 2)]
_LOAD_RESULTS: dict = {}


def write_small_dataset(path: Path, nan_at_step: int | None = None) -> Path:
    """The suites' random dataset (500 steps, 7 sensors, 2 channels, chunks of 50 steps,
    timestamps from 0); optionally a NaN at one step."""
    return write_random_dataset(path, start=0, nan_at_step=nan_at_step, chunk_steps=50)


def mpi_env() -> dict:
    """This environment without PGTI_RANKS_PER_NODE: ranks on one host are one node."""
    return {k: v for k, v in os.environ.items() if k != "PGTI_RANKS_PER_NODE"}


def load_run(base: Path, ranks: int, ranks_per_node: int | None, hosts) -> dict:
    """Run tests/distributed/mpi_load.py once per configuration per session; returns
    {"rows": [per-rank results], "stdout", "stderr", "log", "dataset", "seconds"}."""
    key = (ranks, ranks_per_node)
    if key not in _LOAD_RESULTS:
        outdir = base / f"load-{ranks}-{ranks_per_node}"
        outdir.mkdir(parents=True)
        dataset = write_small_dataset(outdir / "d.h5")
        started = time.monotonic()
        proc = run_mpi_nodes(hosts, ranks, ranks_per_node, [HERE / "mpi_load.py", dataset, outdir])
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        _LOAD_RESULTS[key] = {
            "rows": json.loads((outdir / "result.json").read_text()), "stdout": proc.stdout,
            "stderr": proc.stderr, "log": (outdir / "run.log").read_text(), "dataset": dataset,
            "seconds": time.monotonic() - started}
    return _LOAD_RESULTS[key]
