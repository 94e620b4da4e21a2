"""The benchmarks' own launches across two hosts: `pgti bench memory --hosts 2` reports each
host's PSS, `python -m pgti.bench.scaling --hosts 2` runs its W=4 point as 2 x 2. The hosts
come from $PGTI_MPIRUN_ARGS (a --hostfile), as on a cluster without a batch allocation."""
from __future__ import annotations

import json
import os
import shlex
import sys

from testlib import pgti_command


def on_node1(cluster, argv, timeout=240):
    env = {k: v for k, v in os.environ.items() if k != "PGTI_RANKS_PER_NODE"}
    env["OMP_NUM_THREADS"] = "1"  # forwarded to node2 (-x): its ranks share this machine's cores too
    env["PGTI_MPIRUN_ARGS"] = shlex.join(cluster.mpirun_args(env=env))
    proc = cluster.run_on("node1", argv, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_bench_memory_reports_every_hosts_pss(cluster, cluster_data, tmp_path):
    out = tmp_path / "memory.json"
    on_node1(cluster, pgti_command("bench", "memory", "--data", cluster_data, "--ranks", "4", "--hosts", "2",
                                   "--methods", "node-shared,node-shared-partitioned", "--json", out))
    results = json.loads(out.read_text())["results"]
    assert [(r["method"], r["ranks"], r["hosts"]) for r in results] == [
        ("node-shared", 4, 2), ("node-shared-partitioned", 4, 2)]
    for r in results:
        per_host = r["pss_per_host_bytes"]
        assert sorted(per_host) == ["node1", "node2"], r  # the ranks ran, and reported, on both hosts
        # each host's figure is its two ranks (python + torch + MPI, ~0.2-0.3 GiB each), no more, no less
        assert all(0.15 * 2**30 < pss < 1.5 * 2**30 for pss in per_host.values()), per_host


def test_scaling_runs_its_w4_point_on_two_hosts(cluster, cluster_data, tmp_path):
    out = tmp_path / "scaling.json"
    proc = on_node1(cluster, [sys.executable, "-m", "pgti.bench.scaling", "--data", cluster_data, "--ranks", "4",
                              "--hosts", "2", "--steps", "4", "--json", out, "--work-dir", tmp_path])
    runs = json.loads(out.read_text())["runs"]
    assert sorted({(r["mode"], r["ranks"], r["hosts"]) for r in runs}) == [("strong", 4, 2), ("weak", 4, 2)], runs
    assert all(r["samples_per_s"] > 0 for r in runs)
    assert "W=4 (2x2)" in proc.stdout, proc.stdout
    assert all("--map-by ppr:2:node" in r["command"] and "--hostfile" in r["command"] for r in runs)
