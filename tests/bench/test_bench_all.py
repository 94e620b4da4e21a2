"""`pgti bench all` (app/pgti/bench/suite.py, report.py): the CI smoke run and re-rendering."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pgti.bench import projection


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
    assert {r["method"] for r in scaled["projection"]["rows"] if r["epoch_s"] > 0} == set(projection.METHODS)
    if not results["gpu"]["available"]:
        assert "no GPU was available for this run" in report
