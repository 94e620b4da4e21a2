"""report.md, the charts and results.json of `pgti bench all`, from the results of its sections.

Each section's own module shows it: `pgti.bench.<section>_report` has its `markdown(results)`
(the section's report.md lines), `headlines(results)` (its rows of the headline table) and
`charts(results, out)` (chart name -> a function drawing it into `out`). This module puts the
document together: title, machine (`pgti.bench.machine`), headlines, the sections in the order
they ran, and draws every chart (a failing chart is reported and does not lose the results).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pgti.bench import epoch_report, loader_report, machine, memory_report, model_report, scaling_report
from pgti.bench.format import dur, load
from pgti.errors import UserError
from pgti.outputs import write_text_output

# results.json's layout. 2: one key vocabulary, pgti (this project), pgt_i (PGT-I's method), ddp
# (materialized windows), for the epoch pipelines, the model runs, the loader methods and the
# projection's methods (files without a version used other keys). Raise it whenever a reader of
# the sections would misread an older file.
SCHEMA_VERSION = 2
SECTION_REPORTS = {"epoch": epoch_report, "memory": memory_report, "loader": loader_report,
                   "model": model_report, "scaling": scaling_report}


def read_results(path: Path, out: Path) -> dict:
    """results.json of an earlier `pgti bench all --out OUT`, refused unless of the current schema."""
    if not path.is_file():
        raise UserError(f"--render: {path} does not exist; run `pgti bench all --out {out}` first")
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--render: {path} is not readable JSON ({exc}); re-run `pgti bench all --out {out}`") from None
    found = results.get("schema_version") if isinstance(results, dict) else None
    if found != SCHEMA_VERSION:
        raise UserError(f"--render: {path} has schema_version {found if found is not None else '(none)'}, this pgti "
                        f"renders schema_version {SCHEMA_VERSION}; re-run `pgti bench all --out {out}` to measure "
                        "it again")
    return results


def write(results: dict, out: Path) -> None:
    """Draw the charts, then write OUT/results.json and OUT/report.md."""
    draw_charts(results, out)
    write_text_output(out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    write_text_output(out / "report.md", render(results))


def draw_charts(results: dict, out: Path) -> dict:
    """Every chart of the sections that ran, into `out`; records their names in results["charts"]."""
    sections, charts = results["sections"], {}
    for name, module in SECTION_REPORTS.items():
        if name not in sections or sections[name].get("error"):
            continue
        for key, make in module.charts(results, out).items():
            try:
                charts[key] = Path(make()).name
            except Exception as exc:  # a chart must not lose the results
                print(f"chart {key} failed: {exc}", file=sys.stderr)
    results["charts"] = charts
    return charts


def render(results: dict) -> str:
    """The whole report.md from results.json's content."""
    meta, sections = results["meta"], results["sections"]
    lines = [
        "# pgti benchmark report", "",
        f"Configuration **{meta['configuration']}**, `{meta['command']}`, started "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(meta['started_unix']))}, took "
        f"{dur(meta.get('duration_s'))}.", "",
    ]
    lines += machine.markdown(results)
    lines += headlines(results)
    for number, (name, entry) in enumerate(sections.items(), start=1):
        lines += ["", f"## {number}. {name}", "",
                  f"Section time {dur(entry.get('duration_s'))}, load average {load(entry)}.", ""]
        if entry.get("error"):
            lines += [f"**Failed**: `{entry['error']}` (traceback in results.json).", ""]
            continue
        lines += SECTION_REPORTS[name].markdown(results)
    lines += ["", "## Raw data", "",
              "`results.json` holds every sample (step times, loader rounds, scaling runs, allreduce samples), "
              "the machine and versions, and the configuration; `logs/` the output of every process.", ""]
    return "\n".join(lines)


def headlines(results: dict) -> list[str]:
    """The headline table: every section's ratios, in the sections' fixed order."""
    rows = []
    for name, module in SECTION_REPORTS.items():
        if name in results["sections"]:
            rows += module.headlines(results)
    if not rows:
        return []
    out = ["## Headlines", "", "| figure | ratio | from (same run) |", "|---|---:|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return out
