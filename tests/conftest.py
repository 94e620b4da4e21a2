"""Suite-wide fixtures: CUDA/MPI availability, a small random dataset factory, CLI runner."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from testlib import REPO  # noqa: F401  (tests/ is on pytest's pythonpath: see setup.cfg)


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def make_dataset(tmp_path):
    """Write a small random pgti dataset; returns its path. Values are exact float32."""
    from pgti.data.format import write_dataset

    def make(name="d.h5", T=500, N=7, C=2, seed=0, missing=0.05, interval=300, start=1_330_560_000, **kw):
        rng = np.random.default_rng(seed)
        signals = rng.uniform(1.0, 70.0, size=(T, N, C)).astype(np.float32)
        signals[rng.random((T, N, C)) < missing] = 0.0
        src = rng.integers(0, N, 3 * N)
        dst = rng.integers(0, N, 3 * N)
        edge_index = np.stack([src, dst])
        edge_weight = rng.uniform(0.1, 1.0, src.size).astype(np.float32)
        path = tmp_path / name
        write_dataset(
            path, signals, start + interval * np.arange(T, dtype=np.int64),
            node_ids=[f"s{i}" for i in range(N)], channels=[f"c{i}" for i in range(C)],
            interval_seconds=interval, edge_index=edge_index, edge_weight=edge_weight, **kw,
        )
        return path

    return make


@pytest.fixture
def pgti_cli(capsys):
    """Run the CLI in-process: returns (exit_status, stdout, stderr)."""
    from pgti.cli import main

    def run(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run
