"""Benchmarks check their counts and the batch against the dataset before any work, with pgti
train's rule and message: a batch larger than the training split used to spin a child at 100%
CPU with no output, --batch-size 0 divided by zero, --ranks 0 printed rows for 0 ranks."""
from __future__ import annotations

import pytest

from testlib import synth_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synth_dataset(tmp_path_factory.mktemp("bounds") / "t.h5", num_nodes=6, num_steps=300, seed=2)


@pytest.mark.parametrize("args, words", [
    (["loader", "--batch-size", "100000"], "training windows give no full batch of 100000 on each of 1 ranks"),
    (["loader", "--batch-size", "0"], "--batch-size 0: must be >= 1"),
    (["loader", "--batches", "0"], "--batches 0: must be >= 1"),
    (["epoch", "--model", "dcrnn-pgt", "--batch-size", "5000"], "give no full batch of 5000"),
    (["epoch", "--model", "dcrnn-pgt", "--steps", "0"], "--steps 0: must be >= 1"),
    (["memory", "--ranks", "0"], "--ranks '0': give counts >= 1"),
    (["memory", "--batch-size", "100000"], "give no full batch of 100000"),
    (["model", "--model", "dcrnn", "--batch-size", "100000"], "give no full batch of 100000"),
])
def test_bench_bounds_are_one_line_before_any_work(pgti_cli, data, args, words):
    status, out, err = pgti_cli("bench", *args, "--data", data)
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in err, err
    assert out == ""  # refused before anything was measured
