"""`pgti bench all` (app/pgti/bench/suite.py, report.py): the CI smoke run and re-rendering."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pgti.bench import projection
from pgti.bench.report import SCHEMA_VERSION


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
    assert results["schema_version"] == SCHEMA_VERSION
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
            {"pgti": True, "pgt_i": True}
    assert {r["model"] for r in sections["epoch"]["runs"]} == {"dcrnn-pgt", "dcrnn"}

    from pgti.bench import loader, memory

    rows = sections["memory"]["datasets"]["tiny"]["results"]
    assert {r["method"] for r in rows if r.get("measured") and r["node_pss_bytes"] > 0} == set(memory.METHODS)
    assert {r["method"] for r in sections["memory"]["pems"]["results"] if r["estimate_bytes"] > 0} == \
        set(memory.METHODS)
    rows = sections["loader"]["datasets"]["tiny"]["results"]
    assert {r["method"] for r in rows if r["batches_per_s"] > 0 and r["gb_per_s"] > 0} == set(loader.METHODS)
    for run in sections["model"]["runs"]:
        assert run["pgti"]["median_s"] > 0 and run["pgt_i"]["median_s"] > 0 and run["outputs_agree"]
    scaled = sections["scaling"]
    assert {(r["mode"], r["ranks"]) for r in scaled["summary"] if r["samples_per_s"] > 0} == \
        {("strong", 1), ("strong", 2), ("weak", 1), ("weak", 2)}
    assert {r["engine"] for r in scaled["allreduce"]["rows"] if r["median_s"] > 0} == {"mpi4py", "horovod", "gloo"}
    assert {r["method"] for r in scaled["projection"]["rows"] if r["epoch_s"] > 0} == set(projection.METHODS)
    if not results["gpu"]["available"]:
        assert "no GPU was available for this run" in report


def _results(**top):
    """A results.json without sections: enough for --render."""
    from pgti.bench import machine

    return {"meta": {"configuration": "quick", "command": "pgti bench all", "started_unix": 0.0, "duration_s": 1.0},
            "machine": machine.machine_info() | {"versions": {"torch": "x"}}, "sections": {}, "charts": {},
            "gpu": {"available": False, "note": "no CUDA device"}, **top}


def test_render_rewrites_the_report_from_a_current_results_file(tmp_path, pgti_cli):
    (tmp_path / "results.json").write_text(json.dumps(_results(schema_version=SCHEMA_VERSION)))
    status, out, err = pgti_cli("bench", "all", "--out", tmp_path, "--render")
    assert status == 0, err
    assert (tmp_path / "report.md").read_text().startswith("# pgti benchmark report")
    assert json.loads((tmp_path / "results.json").read_text())["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("version", [None, 1])
def test_render_refuses_an_older_results_file_in_one_line(tmp_path, pgti_cli, version):
    results = _results() if version is None else _results(schema_version=version)
    (tmp_path / "results.json").write_text(json.dumps(results))
    status, out, err = pgti_cli("bench", "all", "--out", tmp_path, "--render")
    assert status == 2 and not (tmp_path / "report.md").exists()
    line, = err.strip().splitlines()  # one line, no traceback
    assert str(tmp_path / "results.json") in line and f"renders schema_version {SCHEMA_VERSION}" in line
    assert f"schema_version {'(none)' if version is None else version}," in line
    assert f"re-run `pgti bench all --out {tmp_path}`" in line
