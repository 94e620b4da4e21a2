"""pgti.distributed.failfast: an error on one rank ends every rank quickly with one message."""
import time

import pytest
from distributed_helpers import HERE, write_small_dataset

from testlib import run_mpi_nodes

ERROR_CASES = [
    # scenario, ranks per node (None: one node; 2: ranks 0-1 on one node, rank 2 on another), exit status, the one message
    ("raise-on-rank-1", None, 1, "RuntimeError: deliberate failure on rank 1"),
    ("bad-path-on-rank-1", None, 2, "pgti: error on rank 1 of 3: {path}.missing: no such file"),
    ("bad-file", 2, 2, "pgti: error: {path}.missing: no such file"),
    ("bad-values", 2, 2, "pgti: error: {path}: /signals: non-finite value at step 400"),
    ("bad-values-leader", 2, 2, "pgti: error: {path}: /signals: non-finite value at step 400"),
]


@pytest.mark.mpi
@pytest.mark.parametrize("scenario, ranks_per_node, status, message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_an_error_on_one_rank_ends_all_ranks_with_one_message(tmp_path, virtual_hosts, scenario, ranks_per_node, status,
                                                              message):
    path = write_small_dataset(tmp_path / "d.h5", nan_at_step=400 if scenario.startswith("bad-values") else None)
    started = time.monotonic()
    proc = run_mpi_nodes(virtual_hosts, 3, ranks_per_node, [HERE / "mpi_errors.py", scenario, path], timeout=60)
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode == status, output[-3000:]
    assert elapsed < 30
    assert output.count(message.format(path=path)) == 1, output[-3000:]
    assert output.count("pgti: ") == 1  # nothing else of ours: one message in all
    assert "finished" not in proc.stdout  # no rank went on past the failure
