"""`pgti bench loader` (app/pgti/bench/loader.py, loader_methods.py, loader_report.py): a smoke run on a
tiny file, the thread choice, and the text report."""
from __future__ import annotations

import json

from pgti.bench import loader, machine
from pgti.bench.loader import METHODS
from pgti.bench.loader_report import format_table


def test_bench_loader_runs_every_method_in_its_own_process(make_dataset, pgti_cli, tmp_path):
    data = make_dataset(T=400, N=6, C=1)
    out = tmp_path / "loader.json"
    status, stdout, stderr = pgti_cli("bench", "loader", "--data", data, "--batch-size", "8", "--batches", "10",
                                      "--threads", "1", "--json", out)
    assert status == 0, stderr
    for method in METHODS:
        assert method in stdout
    assert "PGT-I's IndexDataset" in stdout and "kinder" in stdout  # which per-sample baseline is which
    report = json.loads(out.read_text())
    assert report["config"]["batch_size"] == 8 and report["machine"]["threads"] == 1
    results = {r["method"]: r for r in report["results"]}
    assert set(results) == set(METHODS)
    for r in results.values():
        assert r["batches_per_s"] > 0 and r["gb_per_s"] > 0 and r["setup_s"] > 0 and r["threads"] == 1
        assert r["batches_per_cpu_s"] > 0 and r["page_faults_per_batch"] >= 0
        assert r["peak_rss_bytes"] >= r["base_rss_bytes"] > 0
    # x: 8 windows x 12 steps x 6 sensors x (1 channel + time of day); y: 8 x 12 x 6 x 1; float32
    useful = 8 * 12 * 6 * (2 + 1) * 4
    assert all(r["batch_bytes"] == useful for r in results.values())  # GB/s counts the same bytes for all
    assert results["pgti"]["delivered_bytes"] == results["pgti_fp16"]["delivered_bytes"] == useful
    # PGT-I's batch: float64, x and y both with speed and time of day
    assert results["pgt_i"]["delivered_bytes"] == 8 * (12 + 12) * 6 * 2 * 8
    # memcpy's source (>= 1 GiB) shows in its own peak RSS only: each method ran in a fresh process
    assert results["memcpy"]["peak_rss_bytes"] - results["memcpy"]["base_rss_bytes"] > 0.9 * (1 << 30)
    assert results["pgti"]["peak_rss_bytes"] - results["pgti"]["base_rss_bytes"] < 256 << 20
    assert results["pgti"]["watched_imports"] == []  # no pandas, matplotlib, torch_geometric, baselines...
    assert results["pgt_i"]["watched_imports"] == ["pgti.bench.baselines"]


def test_bench_loader_rejects_unknown_methods_and_missing_files(make_dataset, pgti_cli, tmp_path):
    status, _, stderr = pgti_cli("bench", "loader", "--data", make_dataset(), "--methods", "pgti,magic")
    assert status == 2 and "magic" in stderr
    status, _, stderr = pgti_cli("bench", "loader", "--data", tmp_path / "none.h5")
    assert status == 2 and "no such file" in stderr


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(machine, "available_cpus", lambda: 8)
    for busy, threads in ((0.2, 8), (2.6, 5), (7.6, 1), (30.0, 1)):
        monkeypatch.setattr(machine, "busy_cores", lambda busy=busy: busy)
        assert loader.default_threads() == threads


def test_busy_cores_sees_a_busy_process_now():
    """A spinning process shows as (about) one busy core at once, not a minute later."""
    import subprocess
    import sys

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        assert machine.busy_cores(0.5) >= 0.5
    finally:
        spinner.kill()
        spinner.wait()


def _result(method, rss_mib, batches_per_s, gb_per_s, threads=2, cpu_factor=2.0):
    return {"method": method, "setup_s": 1.0, "peak_rss_bytes": rss_mib << 20, "base_rss_bytes": 200 << 20,
            "batches_per_s": batches_per_s, "gb_per_s": gb_per_s, "batches_per_cpu_s": cpu_factor * batches_per_s,
            "threads": threads}


def test_table_ratios_and_checks():
    table = format_table([_result("materialized", 3000, 100, 0.3), _result("pgt_i", 600, 150, 0.45),
                          _result("per_sample", 400, 500, 1.5), _result("pgti", 290, 1000, 3.0),
                          _result("memcpy", 1300, 5000, 15.0)])
    assert "PASS  pgti peak RSS <= 10% of materialized: 9.7%" in table
    assert "pgti's imports (torch, h5py, pgti), before it holds any data: 6.7%; its data: 3.0%" in table
    assert "PASS  pgti batches/s >= 3x pgt_i (PGT-I's IndexDataset), wall clock: 6.7x" in table
    assert "info  the same, per CPU-second: 6.7x" in table
    assert "info  pgti vs per_sample (the kinder float32 loader, not the target), wall clock: 2.0x" in table
    assert "MISS  pgti GB/s within 4x of memcpy, wall clock: memcpy/pgti = 5.00" in table
    assert "10.34x" in table  # materialized RSS / pgti RSS


def test_single_threaded_runs_are_judged_per_cpu_second():
    # busy machine: PGT-I's run was descheduled half the time (wall 400/s, CPU 800/s); pgti was not
    table = format_table([_result("pgt_i", 600, 400, 1.2, threads=1),
                          _result("pgti", 290, 1600, 4.8, threads=1, cpu_factor=1.0)])
    assert "MISS  pgti batches/s >= 3x pgt_i (PGT-I's IndexDataset), per CPU-second, 1 thread: 2.0x" in table
    assert "info  the same, wall clock: 4.0x" in table and "page-faulted" not in table
    faulting = _result("pgt_i", 600, 100, 0.3, threads=1) | {"page_faults_per_batch": 960.0}
    table = format_table([faulting, _result("pgti", 290, 1600, 4.8, threads=1, cpu_factor=1.0)])
    assert "PASS  pgti batches/s >= 3x pgt_i" in table
    assert "note  every pgt_i run page-faulted (>= 960 per batch" in table  # a PASS to distrust
