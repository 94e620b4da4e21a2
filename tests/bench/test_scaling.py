"""bench scaling's launcher: a launch that mpirun itself failed to start is retried once, a
failing program never."""
from __future__ import annotations

import sys

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
