"""(a) MPI's own node split across two real hosts: no PGTI_RANKS_PER_NODE, Horovod agrees."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent


def probe(cluster, *args) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "PGTI_RANKS_PER_NODE"}
    proc = cluster.mpirun(4, [sys.executable, HERE / "probe_world.py", *args], env=env, timeout=90)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [json.loads(line[len("PROBE "):]) for line in proc.stdout.splitlines() if line.startswith("PROBE ")]
    assert sorted(r["rank"] for r in rows) == [0, 1, 2, 3], proc.stdout
    return sorted(rows, key=lambda r: r["rank"])


def test_mpi_splits_the_world_by_host(cluster):
    rows = probe(cluster)
    assert [r["host"] for r in rows] == ["node1", "node1", "node2", "node2"]
    assert [r["node"] for r in rows] == [0, 0, 1, 1]
    assert {r["num_nodes"] for r in rows} == {2} and {r["local_size"] for r in rows} == {2}
    assert [r["local_rank"] for r in rows] == [0, 1, 0, 1]
    assert [r["leader"] for r in rows] == [True, False, True, False]


def test_horovod_sees_one_cross_rank_per_host(cluster):
    rows = probe(cluster, "--horovod")
    assert {r["hvd_cross_size"] for r in rows} == {2} and {r["hvd_local_size"] for r in rows} == {2}
    assert [r["hvd_cross_rank"] for r in rows] == [0, 0, 1, 1]
