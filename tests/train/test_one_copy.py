"""One copy of the raw array per run: the run's data object (`train.pipeline.Pipeline`) builds
the gather, and with it a GPU's device copy, once, and every epoch, validation, test and
predict batch is gathered from it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import ENV, TINY_RUN

HERE = Path(__file__).parent


def _gathers(*argv: str) -> list[dict]:
    proc = subprocess.run([sys.executable, str(HERE / "count_gathers.py"), *argv], capture_output=True, text=True,
                          timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("GATHERS "))
    return json.loads(line[len("GATHERS "):])


def _settings(*items: str) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


@pytest.mark.parametrize("placement", ["replicated", "partitioned"])
def test_one_gather_per_node_array_across_epochs_and_validation(tiny_data, tmp_path, placement):
    """Three epochs, each validated: one gather of the whole series (replicated), or one per
    split's span (partitioned). Building one per epoch and per validation (as before) fails."""
    run_dir = tmp_path / "run"
    settings = [s for s in TINY_RUN if not s.startswith("train.epochs")] + [
        "train.epochs=3", "train.max_steps=0", "log.plots=false", f"data.path={tiny_data}",
        f"data.placement={placement}"] + ([] if placement == "replicated" else ["train.shuffle=local"])
    gathers = _gathers("train", "--run-dir", str(run_dir), *_settings(*settings))
    expected = 1 if placement == "replicated" else 2  # partitioned: train's span, val's span (no test in training)
    assert len(gathers) == expected, gathers
    assert len({g["storage"] for g in gathers}) == expected

    # evaluate: the baseline and the model read one gather of the split's array
    gathers = _gathers("evaluate", str(run_dir), "--split", "test")
    assert len(gathers) == 1, gathers
    # predict likewise
    gathers = _gathers("predict", str(run_dir), "--out", str(tmp_path / "p.h5"))
    assert len(gathers) == 1, gathers


def _peak_device_bytes(data, run_dir) -> int:
    """Train 5 steps on CUDA (a stop at max_steps inside the epoch: validation then runs while
    the training batcher is alive); the run's recorded peak device memory."""
    from train_helpers import run_train

    proc = run_train(data, run_dir, "train.device=cuda", "dist.engine=ddp", "train.batch_size=4",
                     "train.max_steps=5", "log.plots=false", "data.ratios=[0.8, 0.05, 0.15]", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return rows[-1]["peak_device_bytes"]


@pytest.mark.gpu
def test_gpu_training_holds_one_device_copy_of_the_raw_array(make_dataset, tmp_path):
    """Peak device memory < 1.2 x (raw array + one step's own memory), where one step's memory
    (model, optimizer state, a batch and its activations) is the peak of the same run on a
    series too short to matter. A second copy (one per batcher) would need about 2 x raw."""
    steps, nodes = 100_000, 1_000  # raw 400 MB; one step of the small model about 0.1 GB
    big = make_dataset("big.h5", T=steps, N=nodes, C=1, missing=0.0)
    small = make_dataset("small.h5", T=800, N=nodes, C=1, missing=0.0)
    raw_bytes = steps * nodes * 4
    step_bytes = _peak_device_bytes(small, tmp_path / "small-run")
    peak = _peak_device_bytes(big, tmp_path / "big-run")
    assert step_bytes < raw_bytes / 2, "the model is too large for this test to tell one copy from two"
    assert peak < 1.2 * (raw_bytes + step_bytes), (peak, raw_bytes, step_bytes)
