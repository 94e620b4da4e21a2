"""Helpers of the tests/distributed suites: small datasets and MPI launches run once per session."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from testlib import run_mpi

HERE = Path(__file__).parent
# (ranks, PGTI_RANKS_PER_NODE or None = the real node): one real node, two simulated nodes of
# one rank, and a node of two ranks next to a node of one.
LOAD_CONFIGS = [(2, None), (2, 1), (3, 2)]
_LOAD_RESULTS: dict = {}


def write_small_dataset(path: Path, num_steps: int = 500, num_nodes: int = 7, num_channels: int = 2,
                        nan_at_step: int | None = None) -> Path:
    """A random pgti dataset (chunks of 50 steps); optionally a NaN at one step."""
    from pgti.data.format import write_dataset

    rng = np.random.default_rng(0)
    signals = rng.uniform(1.0, 70.0, size=(num_steps, num_nodes, num_channels)).astype(np.float32)
    signals[rng.random(signals.shape) < 0.05] = 0.0
    if nan_at_step is not None:
        signals[nan_at_step, 1, 0] = np.nan
    edge_index = np.stack([np.arange(num_nodes), np.roll(np.arange(num_nodes), 1)])
    return write_dataset(path, signals, 300 * np.arange(num_steps, dtype=np.int64),
                         node_ids=[f"s{i}" for i in range(num_nodes)],
                         channels=[f"c{i}" for i in range(num_channels)], interval_seconds=300,
                         edge_index=edge_index, edge_weight=np.ones(num_nodes, np.float32), chunk_steps=50)


def mpi_env(ranks_per_node: int | None) -> dict:
    env = dict(os.environ)
    env.pop("PGTI_RANKS_PER_NODE", None)
    if ranks_per_node is not None:
        env["PGTI_RANKS_PER_NODE"] = str(ranks_per_node)
    return env


def load_run(base: Path, ranks: int, ranks_per_node: int | None) -> dict:
    """Run tests/distributed/mpi_load.py once per configuration per session; returns
    {"rows": [per-rank results], "stdout", "stderr", "log", "dataset", "seconds"}."""
    key = (ranks, ranks_per_node)
    if key not in _LOAD_RESULTS:
        outdir = base / f"load-{ranks}-{ranks_per_node}"
        outdir.mkdir(parents=True)
        dataset = write_small_dataset(outdir / "d.h5")
        started = time.monotonic()
        proc = run_mpi(ranks, [HERE / "mpi_load.py", dataset, outdir], env=mpi_env(ranks_per_node))
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        _LOAD_RESULTS[key] = {
            "rows": json.loads((outdir / "result.json").read_text()), "stdout": proc.stdout,
            "stderr": proc.stderr, "log": (outdir / "run.log").read_text(), "dataset": dataset,
            "seconds": time.monotonic() - started}
    return _LOAD_RESULTS[key]
