"""`pgti bench loader` (app/pgti/bench/loader.py): a smoke run on a tiny file, and the report."""
from __future__ import annotations

import json

from pgti.bench.loader import format_table


def test_bench_loader_runs_every_method_in_its_own_process(make_dataset, pgti_cli, tmp_path):
    data = make_dataset(T=400, N=6, C=1)
    out = tmp_path / "loader.json"
    status, stdout, stderr = pgti_cli("bench", "loader", "--data", data, "--batch-size", "8", "--batches", "10",
                                      "--json", out)
    assert status == 0, stderr
    for method in ("materialized", "per_sample", "index", "memcpy"):
        assert method in stdout
    report = json.loads(out.read_text())
    assert report["config"]["batch_size"] == 8
    results = {r["method"]: r for r in report["results"]}
    assert set(results) == {"materialized", "per_sample", "index", "memcpy"}
    pids = set()
    for r in results.values():
        assert r["batches_per_s"] > 0 and r["gb_per_s"] > 0 and r["setup_s"] > 0
        assert r["peak_rss_bytes"] >= r["base_rss_bytes"] > 0
    # x: 8 windows x 12 steps x 6 sensors x (1 channel + time of day); y: 8 x 12 x 6 x 1; float32
    assert results["index"]["batch_bytes"] == 8 * 12 * 6 * (2 + 1) * 4 == results["memcpy"]["batch_bytes"]
    # memcpy's source (>= 1 GiB) shows in its own peak RSS only: each method ran in a fresh process
    assert results["memcpy"]["peak_rss_bytes"] - results["memcpy"]["base_rss_bytes"] > 0.9 * (1 << 30)
    assert results["index"]["peak_rss_bytes"] - results["index"]["base_rss_bytes"] < 256 << 20


def test_bench_loader_rejects_unknown_methods_and_missing_files(make_dataset, pgti_cli, tmp_path):
    status, _, stderr = pgti_cli("bench", "loader", "--data", make_dataset(), "--methods", "index,magic")
    assert status == 2 and "magic" in stderr
    status, _, stderr = pgti_cli("bench", "loader", "--data", tmp_path / "none.h5")
    assert status == 2 and "no such file" in stderr


def _result(method, rss_mib, batches_per_s, gb_per_s):
    return {"method": method, "setup_s": 1.0, "peak_rss_bytes": rss_mib << 20, "base_rss_bytes": 200 << 20,
            "batches_per_s": batches_per_s, "gb_per_s": gb_per_s}


def test_table_ratios_and_checks():
    table = format_table([_result("materialized", 3000, 100, 0.3), _result("per_sample", 400, 200, 0.6),
                          _result("index", 290, 1000, 3.0), _result("memcpy", 1300, 5000, 15.0)])
    assert "PASS  index peak RSS <= 10% of materialized: 9.7%" in table
    assert "PASS  index batches/s >= 3x per_sample: 5.0x" in table
    assert "MISS  index GB/s within 4x of memcpy: memcpy/index = 5.00" in table
    assert "10.34x" in table  # materialized RSS / index RSS
