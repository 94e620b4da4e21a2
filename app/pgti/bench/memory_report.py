"""`pgti bench memory`'s results shown: its markdown table and chart, and the `memory` section
of `pgti bench all` (report.md lines, headlines, charts)."""
from __future__ import annotations

from pathlib import Path

from pgti.bench.format import gib, gib_column, pyplot, save_figure, x
from pgti.bench.memory import LABELS, METHODS


def table(results: list[dict], raw_bytes: int) -> str:
    lines = ["| method | ranks | node memory (summed PSS) | x raw array | vs node-shared | peak RSS per rank (max) |",
             "|---|---:|---:|---:|---:|---:|"]
    pgti = {r["ranks"]: r["node_pss_bytes"] for r in results if r["method"] == "node-shared" and r.get("measured")}
    for r in results:
        if r.get("measured"):
            base = pgti.get(r["ranks"])
            ratio = f"{r['node_pss_bytes'] / base:.2f}x" if base else "-"
            lines.append(f"| {LABELS[r['method']]} | {r['ranks']} | {gib_column(r['node_pss_bytes'])} | "
                         f"{r['node_pss_bytes'] / raw_bytes:.2f} | {ratio} | {gib_column(max(r['peak_rss_per_rank_bytes']))} |")
        else:
            lines.append(f"| {LABELS[r['method']]} | {r['ranks']} | impossible here (needs ~{gib_column(r['estimate_bytes'])}) "
                         f"| {r['estimate_bytes'] / raw_bytes:.1f} (est.) | - | - |")
    return "\n".join(lines)


def chart(results: list[dict], path: Path, title: str) -> Path:
    import numpy as np

    plt = pyplot()

    ranks = sorted({r["ranks"] for r in results})
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        vals, hatches = [], []
        for w in ranks:
            row = next((r for r in results if r["method"] == method and r["ranks"] == w), None)
            if row is None:
                vals.append(0.0)
                hatches.append("")
            elif row.get("measured"):
                vals.append(row["node_pss_bytes"] / 2**30)
                hatches.append("")
            else:
                vals.append(row["estimate_bytes"] / 2**30)
                hatches.append("//")
        bars = ax.bar(np.arange(len(ranks)) + i * width, vals, width, label=LABELS[method])
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
            if hatch:
                bar.set_alpha(0.4)
    ax.set_xticks(np.arange(len(ranks)) + width * (len(METHODS) - 1) / 2, [f"W={w}" for w in ranks])
    ax.set_ylabel("node memory (GiB, summed PSS)")
    if any(not r.get("measured") for r in results):
        ax.text(0.01, 0.98, "hatched: estimated, cannot run on this machine", transform=ax.transAxes,
                va="top", fontsize=8)
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, path)


def headlines(results: dict) -> list[tuple[str, str, str]]:
    """(figure, ratio, from) rows of the report's headline table."""
    sections, rows = results["sections"], []
    memory = sections.get("memory", {}).get("datasets") or {}
    if memory:
        name = list(memory)[-1]
        res = memory[name]["results"]
        w = max(r["ranks"] for r in res)

        def node(method):
            row = next((r for r in res if r["method"] == method and r["ranks"] == w), None)
            if row is None:
                return None, ""
            if row.get("measured"):
                return row["node_pss_bytes"], ""
            return row["estimate_bytes"], " (est.)"

        pgti, _ = node("node-shared")
        for method, label in (("per-rank-copy", "PGT-I per-rank copy"), ("materialized", "materialized (DDP)")):
            baseline, note = node(method)
            if pgti and baseline:
                rows.append((f"node memory, {name}, W={w}: {label} / pgti node-shared", x(baseline / pgti),
                             f"{gib(baseline)}{note} vs {gib(pgti)}"))
    return rows


def charts(results: dict, out: Path) -> dict:
    """Chart name -> a function drawing it into the directory `out` (returns its path)."""
    made = {}
    for name, d in results["sections"]["memory"]["datasets"].items():
        title = f"node memory, {name} ({d['num_nodes']} sensors x {d['num_steps']:,} steps)"
        path = out / f"memory-{name}.png"
        made[f"memory-{name}"] = lambda rows=d["results"], path=path, title=title: chart(rows, path, title)
    return made


def markdown(results: dict) -> list[str]:
    """The `memory` section of report.md."""
    entry = results["sections"]["memory"]
    out = ["Node memory (summed PSS of all ranks, shared pages counted once) of real `mpirun` launches that hold "
           "the data each method's way and gather 8 batches (`pgti bench memory`). " +
           " ".join(f"`{k}`: {v}." for k, v in LABELS.items()), ""]
    for name, d in entry["datasets"].items():
        out += [f"**{name}** ({d['num_nodes']:,} sensors x {d['num_steps']:,} steps, raw array "
                f"{gib(d['raw_bytes'])})", "", d["table"], "",
                f"![node memory {name}]({results['charts'].get(f'memory-{name}', '')})", ""]
    pems = entry["pems"]
    how = (f"pgti's placements measured on `{pems['measured_file']}`, the others estimated"
           if pems.get("measured_file") else "estimated with `pgti.bench.memory.estimate` for every method (no "
           "--pems file given; the peers cannot run it on this machine)")
    out += [f"**pems** ({pems['num_nodes']:,} sensors x {pems['num_steps']:,} steps, raw array "
            f"{gib(pems['raw_bytes'])}): {how}.", "",
            "| method | ranks | node memory | x raw array | vs node-shared | how |", "|---|---:|---:|---:|---:|---|"]
    rows = pems["results"]

    def size(row):
        return row["node_pss_bytes"] if row.get("measured") else row["estimate_bytes"]

    for row in rows:
        pgti = next((r for r in rows if r["method"] == "node-shared" and r["ranks"] == row["ranks"]), None)
        how = "measured (summed PSS)" if row.get("measured") else "estimated"
        out.append(f"| {LABELS[row['method']]} | {row['ranks']} | {gib(size(row))} | "
                   f"{size(row) / pems['raw_bytes']:.2f} | {x(size(row) / size(pgti)) if pgti else '-'} | {how} |")
    out += ["", "(Estimates: the data each method holds plus a 0.3 GiB runtime per rank; the materialized "
            "windows of one rank alone exceed this machine's memory.)", ""]
    return out

