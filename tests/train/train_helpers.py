"""Small real training runs: a tiny DCRNN launched as `pgti train` (fixtures: conftest.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

TINY_RUN = [
    "model.name=dcrnn", "model.params.hidden_size=8", "model.params.num_layers=1", "model.params.cl_decay_steps=20",
    "train.batch_size=32", "train.epochs=2", "train.lr=0.01", "train.milestones=[1]", "log.every_steps=5",
    "log.plots=true", "dist.engine=horovod",
]


def train_cmd(data: Path, run_dir: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "pgti.cli", "train", "--run-dir", str(run_dir), "--set", f"data.path={data}"]
    for item in TINY_RUN + list(extra):
        cmd += [item] if item.startswith("--") else ["--set", item]  # "--flag" items pass through
    return cmd


# One torch thread: bit-exactness is promised for a fixed single thread. With two intra-op
# threads about 1 run in 30 differs in the last bits (see README, "Checkpoint-restart": two
# threads are deterministic alone, not while another thread of the process, the prefetch
# thread, runs torch work; the kernel responsible is not found yet).
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run_train(data, run_dir, *extra, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(data, run_dir, *extra), capture_output=True, text=True, timeout=timeout, env=ENV)


def final_model(run_dir: Path) -> dict:
    from pgti.train.checkpoint import CheckpointManager, load_checkpoint

    return load_checkpoint(CheckpointManager(run_dir / "checkpoints").latest())["model"]


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = {k: float((a[k].double() - b[k].double()).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert not differ, f"parameters differ (max |difference| per tensor): {differ}"
