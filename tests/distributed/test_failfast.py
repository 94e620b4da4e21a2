"""pgti.distributed.failfast: an error on one rank ends every rank quickly with one message."""
import time

import pytest
from distributed_helpers import HERE, mpi_env, write_small_dataset

from testlib import run_mpi

ERROR_CASES = [
    # scenario, PGTI_RANKS_PER_NODE, exit status, the one message
    ("raise-on-rank-1", None, 1, "RuntimeError: deliberate failure on rank 1"),
    ("bad-path-on-rank-1", None, 2, "pgti: error on rank 1 of 3: {path}.missing: no such file"),
    ("bad-file", "1", 2, "pgti: error: {path}.missing: no such file"),
    ("bad-values", "1", 2, "pgti: error: {path}: /signals: non-finite value at step 400"),
    ("bad-values-leader", "1", 2, "pgti: error: {path}: /signals: non-finite value at step 400"),
]


@pytest.mark.mpi
@pytest.mark.parametrize("scenario, ranks_per_node, status, message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_an_error_on_one_rank_ends_all_ranks_with_one_message(tmp_path, scenario, ranks_per_node, status, message):
    path = write_small_dataset(tmp_path / "d.h5", nan_at_step=400 if scenario.startswith("bad-values") else None)
    started = time.monotonic()
    proc = run_mpi(3, [HERE / "mpi_errors.py", scenario, path], timeout=60, env=mpi_env(ranks_per_node))
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == status, output[-3000:]
    assert elapsed < 30
    assert output.count(message.format(path=path)) == 1, output[-3000:]
    assert output.count("pgti: ") == 1  # nothing else of ours: one message in all
    assert "finished" not in proc.stdout  # no rank went on past the failure
