"""A diverging run stops on every rank with exit 1 and one message, and leaves only finite
checkpoints (pgti.train.loop.diverged, train.skip_nonfinite)."""
from __future__ import annotations

import subprocess

import h5py
import pytest
import torch

from testlib import mpirun_command, run_pgti, train_command, write_random_dataset


@pytest.fixture
def exploding(tmp_path):
    """Finite data whose square overflows float32: the scaler and every squared loss are inf."""
    path = write_random_dataset(tmp_path / "huge.h5", T=500, N=7, C=1, start=0, chunk_steps=50)
    with h5py.File(path, "r+") as f:
        f["signals"][100, 3, 0] = 2e19
    return path


def train(data, run_dir, *settings):
    cmd = mpirun_command(2) + train_command(data, run_dir, "model.name=dcrnn-pgt", "train.loss=masked_mse",
                                            "train.batch_size=8", "train.max_steps=20", "checkpoint.every_steps=1",
                                            "log.every_steps=1", "log.plots=false", *settings)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


@pytest.mark.mpi
def test_a_nonfinite_step_stops_every_rank_with_one_message(exploding, tmp_path):
    proc = train(exploding, tmp_path / "run")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-3000:]
    assert text.count("training diverged: non-finite loss or gradient norm at epoch 1 step 1 (global step 1)") == 1
    assert "The last good checkpoint is none (no checkpoint yet)" in text and "Traceback" not in text, text[-3000:]
    assert not list((tmp_path / "run" / "checkpoints").glob("*.pt"))  # nothing written after the bad step
    status = run_pgti("status", tmp_path / "run", "--json")
    assert status.returncode == 0, status.stderr
    assert '"state": "diverged"' in status.stdout and '"exit_status": 1' in status.stdout, status.stdout


@pytest.mark.mpi
def test_skip_nonfinite_skips_with_a_warning_then_stops_and_every_checkpoint_is_finite(exploding, tmp_path):
    run_dir = tmp_path / "run"
    proc = train(exploding, run_dir, "train.skip_nonfinite=2")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-3000:]
    assert text.count("step skipped") == 2 and text.count("training diverged") == 1, text[-3000:]
    assert "at epoch 1 step 3 (global step 3); stopping" in text
    assert f"The last good checkpoint is {run_dir / 'checkpoints' / 'step-000000002.pt'}." in text
    saved = sorted((run_dir / "checkpoints").glob("*.pt"))
    assert [p.name for p in saved] == ["step-000000001.pt", "step-000000002.pt"]
    for path in saved:  # skipped steps left the parameters as they were: finite
        state = torch.load(path, map_location="cpu", weights_only=False)
        assert all(torch.isfinite(v).all() for v in state["model"].values()), path
