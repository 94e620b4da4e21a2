"""(b) one node-shared array per host, whatever the loading mode, its bytes the file's;
(c) partitioned placement: each host holds only its span (its PSS is printed)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def rows(cluster, cluster_data, tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("placement") / "rows.json"
    proc = cluster.mpirun(4, [sys.executable, HERE / "mpi_placement.py", cluster_data, out], timeout=90)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def per_host(rows: list[dict], key: str) -> dict[str, list[dict]]:
    hosts: dict[str, list[dict]] = {}
    for row in rows:
        hosts.setdefault(row["host"], []).append(row[key])
    return hosts


@pytest.mark.parametrize("mode", ["bcast", "leaders"])
def test_one_shared_copy_per_host_holds_the_files_bytes(rows, mode):
    hosts = per_host(rows, mode)
    assert sorted(hosts) == ["node1", "node2"]
    assert all(view["exact"] for views in hosts.values() for view in views)
    backing = {host: {v["map"]["inode"] for v in views} for host, views in hosts.items()}
    assert all(len(inodes) == 1 for inodes in backing.values()), backing  # the host's ranks map one segment
    assert backing["node1"] != backing["node2"], backing  # ... and each host has its own
    for host, views in hosts.items():
        held = sum(v["map"]["pss"] for v in views)  # each page counted once over the host's ranks
        assert held == views[0]["map"]["rss"] >= views[0]["nbytes"], (host, views)


def test_partitioned_hosts_hold_only_their_span(rows, capsys):
    hosts = per_host(rows, "partitioned")
    full = rows[0]["bcast"]["nbytes"]
    spans = {host: (views[0]["t0"], views[0]["t1"]) for host, views in hosts.items()}
    assert all(view["exact"] and view["windows_inside"] for views in hosts.values() for view in views)
    assert all(len({(v["t0"], v["t1"]) for v in views}) == 1 for views in hosts.values()), spans
    assert spans["node1"][0] == 0 and spans["node2"][1] == rows[0]["bcast"]["t1"], spans
    assert spans["node1"][1] < spans["node2"][1] and spans["node2"][0] > 0, spans  # neither holds it all
    pss = {host: sum(v["map"]["pss"] for v in views) for host, views in hosts.items()}
    for host, views in hosts.items():
        assert views[0]["nbytes"] <= pss[host] < full, (host, pss, full)
    with capsys.disabled():
        print("\n  partitioned placement, per-host PSS of the signals: " + ", ".join(
            f"{h} {pss[h]} B (steps {spans[h][0]}-{spans[h][1]})" for h in sorted(pss)) + f"; replicated {full} B")
