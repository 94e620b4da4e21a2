"""`pgti bench all` (app/pgti/bench/report.py): the CI smoke run, and the scaling projection's model."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pgti.bench import scaling


@pytest.mark.slow
@pytest.mark.mpi
def test_quick_run_writes_report_results_and_charts_with_figures_for_every_method(tmp_path):
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, "-m", "pgti.cli", "bench", "all", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "expected duration" in done.stdout
    report = (out / "report.md").read_text()
    results = json.loads((out / "results.json").read_text())
    sections = results["sections"]
    assert set(sections) == {"epoch", "memory", "loader", "model", "scaling"}
    assert not [name for name, entry in sections.items() if entry.get("error")]
    for name in ("epoch", "memory-tiny", "loader", "model", "scaling", "projection"):
        chart = out / results["charts"][name]
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({chart.name})" in report
    assert results["machine"]["versions"]["torch"] and results["machine"]["load_average_start"]
    assert "## Headlines" in report and "load average" in report

    for run in sections["epoch"]["runs"]:  # both pipelines, every model
        assert {p: v["samples_per_s"] > 0 and len(v["step_seconds"]) > 0 for p, v in run["pipelines"].items()} == \
            {"ours": True, "pgti": True}
    assert {r["model"] for r in sections["epoch"]["runs"]} == {"dcrnn-pgt", "dcrnn"}

    from pgti.bench import loader, memory

    rows = sections["memory"]["datasets"]["tiny"]["results"]
    assert {r["method"] for r in rows if r.get("measured") and r["node_pss_bytes"] > 0} == set(memory.METHODS)
    assert {r["method"] for r in sections["memory"]["pems"]["results"] if r["estimate_bytes"] > 0} == \
        set(memory.METHODS)
    rows = sections["loader"]["datasets"]["tiny"]["results"]
    assert {r["method"] for r in rows if r["batches_per_s"] > 0 and r["gb_per_s"] > 0} == set(loader.METHODS)
    for run in sections["model"]["runs"]:
        assert run["ours"]["median_s"] > 0 and run["reference"]["median_s"] > 0 and run["outputs_agree"]
    scaled = sections["scaling"]
    assert {(r["mode"], r["ranks"]) for r in scaled["summary"] if r["samples_per_s"] > 0} == \
        {("strong", 1), ("strong", 2), ("weak", 1), ("weak", 2)}
    assert {r["engine"] for r in scaled["allreduce"]["rows"] if r["median_s"] > 0} == {"mpi4py", "horovod", "gloo"}
    assert {r["method"] for r in scaled["projection"]["rows"] if r["epoch_s"] > 0} == set(scaling.METHODS)
    if not results["gpu"]["available"]:
        assert "no GPU was available for this run" in report


def _inputs(**extra):
    inputs = {"compute_s_per_window_sensor": {"pgti": 2e-6, "pgt-i": 12e-6}, "index_memcpy_efficiency": 0.5,
              "pgt_loader_s_per_window": 20e-6, "memcpy_bytes_s": 10e9,
              "engine_overhead_s": {"horovod": 1e-3, "gloo": 2e-3}}
    inputs.update(extra)
    return inputs


def test_projection_follows_its_model_and_reproduces_the_calibration():
    p = scaling.project(_inputs())
    a, sizes = p["assumptions"], p["sizes"]
    assert a["gpu_factor"] == pytest.approx(a["gpu_bandwidth_bytes_s"] / 10e9)  # bandwidth ratio by default
    assert sizes["train_windows"] == round(0.7 * (105_120 - 23))
    # 24x the raw array per rank (x also carries the time of day): DDP cannot hold PeMS
    assert sizes["materialized_speed_only_bytes_per_rank"] > 23 * sizes["raw_bytes"]
    assert not p["memory"]["ddp_fits_gpu"] and not p["memory"]["ddp_fits_node"]
    rows = {(r["method"], r["gpus"]): r for r in p["rows"]}
    for w in a["gpus"]:
        for method in scaling.METHODS:
            r = rows[(method, w)]
            assert r["epoch_s"] == pytest.approx(r["steps_per_epoch"] * r["step_s"])
            assert 0 < r["efficiency"] <= 1.0 + 1e-12
    # the DDP model is calibrated on PGT-I's headline at 128 GPUs
    assert rows[("ddp", 128)]["epoch_s"] / rows[("pgt-i", 128)]["epoch_s"] == pytest.approx(11.78)
    ours = rows[("pgti", 128)]
    compute = 2e-6 * 64 * 11_160 / a["gpu_factor"]
    ring = 2 * 127 / 128 * 600 / 25e9 + 2 * 127 * 5e-6
    assert ours["step_s"] == pytest.approx(compute + p["data_s"]["pgti"] + ring + 1e-3)


def test_ring_allreduce_model():
    assert scaling.ring_allreduce_s(1e9, 1, 25e9, 5e-6) == 0.0
    assert scaling.ring_allreduce_s(1e9, 2, 25e9, 5e-6) == pytest.approx(1e9 / 25e9 + 2 * 5e-6)
    assert scaling.ring_allreduce_s(0, 128, 25e9, 5e-6) == pytest.approx(2 * 127 * 5e-6)


def test_sensitivity_and_summary():
    rows = scaling.sensitivity(_inputs(), {"gpu_factor": 100.0})
    assert [r["gpu_factor"] for r in rows] == [25.0, 100.0, 400.0]
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
