"""pgti.distributed.shared: one copy per node, measured; read-only, aligned, torch views."""
import hashlib
import json

import numpy as np
import pytest
from distributed_helpers import HERE, mpi_env

from testlib import run_mpi

MIB = 1 << 20


@pytest.mark.mpi
def test_node_shared_signals_cost_one_copy_per_node_not_one_per_rank(tmp_path):
    from pgti.data.format import write_dataset

    # 200 MiB of float32 (T=25600, N=1024, C=2): big enough that the array dominates the noise.
    pattern = np.random.default_rng(0).uniform(0.0, 70.0, size=(256, 1024, 2)).astype(np.float32)
    signals = np.tile(pattern, (100, 1, 1))
    path = write_dataset(tmp_path / "big.h5", signals, 300 * np.arange(len(signals), dtype=np.int64),
                         node_ids=[f"s{i}" for i in range(1024)], channels=["a", "b"], interval_seconds=300,
                         edge_index=np.zeros((2, 1), np.int64), edge_weight=np.ones(1, np.float32))
    file_digest = hashlib.sha1(signals).hexdigest()
    array_mib = signals.nbytes / MIB
    del signals, pattern

    ranks = 3
    proc = run_mpi(ranks, [HERE / "mpi_shared.py", path, tmp_path], env=mpi_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = json.loads((tmp_path / "result.json").read_text())
    assert [r["local_size"] for r in rows] == [ranks] * ranks  # one node

    shared_growth = sum(r["with_shared"] - r["before"] for r in rows) / 1024  # MiB, all ranks
    copies_growth = sum(r["with_copies"] - r["with_shared"] for r in rows) / 1024
    print(f"summed PSS growth of {ranks} ranks for a {array_mib:.0f} MiB array: "
          f"node-shared {shared_growth:.0f} MiB, per-rank copies {copies_growth:.0f} MiB")
    assert 0.9 * array_mib < shared_growth < 1.25 * array_mib  # one copy for the node
    assert copies_growth > 0.9 * ranks * array_mib  # what a per-rank loader costs: W copies

    for r in rows:
        assert r["nbytes"] == array_mib * MIB
        assert r["digest"] == file_digest  # every rank sees the file's bytes
        assert r["aligned64"] and r["refuses_writes"]
        assert r["tensor_warnings"] == [] and r["tensor_shares_memory"] and r["tensor_values_match"]
        assert r["device"] == "cpu" or r["device"].startswith("cuda:")
        assert r["cuda_refused_or_available"] and r["freed"]
