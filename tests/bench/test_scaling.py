"""bench scaling (app/pgti/bench/scaling.py): the summary, the train command, and the launcher (a launch
that mpirun itself failed to start is retried once, a failing program never)."""
from __future__ import annotations

import sys

from pgti.bench import scaling
from pgti.bench.scaling import LAUNCHER_FAILURES, launch

FLAKY = """
import pathlib, sys
count = pathlib.Path(sys.argv[1])
n = int(count.read_text()) if count.exists() else 0
count.write_text(str(n + 1))
if n == 0 and sys.argv[2] == "launcher":
    print({marker!r}, file=sys.stderr)
    sys.exit(213)
sys.exit(0 if sys.argv[2] == "launcher" else 3)
"""


def test_only_a_launcher_failure_is_retried(tmp_path):
    script = tmp_path / "fake_mpirun.py"
    script.write_text(FLAKY.format(marker=LAUNCHER_FAILURES[0]))
    done = launch([sys.executable, str(script), str(tmp_path / "a"), "launcher"], timeout=60)
    assert done.returncode == 0 and (tmp_path / "a").read_text() == "2"
    done = launch([sys.executable, str(script), str(tmp_path / "b"), "program"], timeout=60)
    assert done.returncode == 3 and (tmp_path / "b").read_text() == "1"


def test_summary_is_the_median_over_repeats_against_w1():
    runs = [{"mode": "strong", "ranks": 1, "samples_per_s": 100.0}, {"mode": "strong", "ranks": 2, "samples_per_s": 150.0},
            {"mode": "strong", "ranks": 2, "samples_per_s": 170.0}, {"mode": "weak", "ranks": 1, "samples_per_s": 100.0}]
    summary = {(r["mode"], r["ranks"]): r for r in scaling.summarize_scaling(runs)}
    assert summary[("strong", 2)]["samples_per_s"] == 160.0 and summary[("strong", 2)]["efficiency"] == 0.8
    assert summary[("weak", 1)]["efficiency"] == 1.0


def test_train_command_sets_the_batch_and_step_budget(tmp_path):
    cmd = scaling.train_command(4, tmp_path / "d.h5", 16, 30, tmp_path / "run")
    text = " ".join(cmd)
    assert "-np 4" in text and "train.batch_size=16" in text and "train.max_steps=30" in text
    assert "log.progress=lines" in text and ("--oversubscribe" in cmd) == (4 > (__import__("os").cpu_count() or 1))
