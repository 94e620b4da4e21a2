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
