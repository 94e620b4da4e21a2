"""The `model` section of `pgti bench all`: report.md lines, headlines and chart."""
from __future__ import annotations

from pathlib import Path

from pgti.bench.format import gib, log_floor, pyplot, save_figure, x


def headlines(results: dict) -> list[tuple[str, str, str]]:
    """(figure, ratio, from) rows of the report's headline table."""
    sections, rows = results["sections"], []
    for r in sections.get("model", {}).get("runs") or []:
        if r.get("speedup"):
            rows.append((f"model step, {r['model']} on {r['dataset_name']}: PGT-I message passing / pgti",
                         x(r["speedup"]), f"time; peak memory {x(r.get('memory_ratio'))} less"))
    return rows


def charts(results: dict, out: Path) -> dict:
    """Chart name -> a function drawing it into the directory `out` (returns its path)."""
    runs = results["sections"]["model"]["runs"]
    return {"model": lambda: chart(runs, out / "model.png")} if runs else {}


def chart(runs: list[dict], path: Path) -> Path:
    """Seconds per training step and peak step memory, pgti vs PGT-I's message passing."""
    import numpy as np

    plt = pyplot()
    labels = [f"{r['model']}\n{r['dataset_name']}\n{r['device']}" for r in runs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    xs = np.arange(len(runs))
    for offset, key, name in ((-0.2, "pgti", "pgti (batched sparse)"), (0.2, "pgt_i", "PGT-I message passing")):
        secs = [(r.get(key) or {}).get("median_s") or 0 for r in runs]
        mem = [((r.get(key) or {}).get("peak_bytes") or 0) / 2**20 for r in runs]
        axes[0].bar(xs + offset, secs, 0.4, label=name)
        axes[1].bar(xs + offset, mem, 0.4, label=name)
    for ax, label, values in ((axes[0], "s per training step (median)", [
            (r.get(k) or {}).get("median_s") for r in runs for k in ("pgti", "pgt_i")]),
            (axes[1], "peak step memory (MiB)", [
                ((r.get(k) or {}).get("peak_bytes") or 0) / 2**20 for r in runs for k in ("pgti", "pgt_i")])):
        ax.set_xticks(xs, labels, fontsize=7)
        ax.set_yscale("log")
        log_floor(ax, values)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    return save_figure(fig, path, "one training step (forward + backward), batch 64, same weights and batch")


def markdown(results: dict) -> list[str]:
    """The `model` section of report.md."""
    entry = results["sections"]["model"]
    out = ["One training step (forward + backward) on the same batch with the same weights (`pgti bench model "
           "--json`): pgti's batched sparse diffusion vs PGT-I-style message passing over replicated edges. Outputs "
           "are checked to agree (max |difference| <= 1e-4) before timing. Peak memory on CPU: growth of the peak "
           "resident set in a child process (0 = below that method's resolution: the step fit in memory the process "
           "already held). CPU benchmark processes run with OMP_NUM_THREADS = the cores other work left "
           "idle (at least 1).", "",
           "| model | dataset | device | params | pgti s/step | PGT-I s/step | speedup | pgti peak | "
           "PGT-I peak | memory ratio | max output diff |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in entry["runs"]:
        o, ref = r.get("pgti") or {}, r.get("pgt_i") or {}
        out.append(f"| {r['model']} | {r['dataset_name']} | {r['device']} | {o.get('parameters', 0):,} | "
                   f"{o.get('median_s', 0):.3f} | {ref.get('median_s') or 0:.3f} | **{x(r.get('speedup'))}** | "
                   f"{gib(o.get('peak_bytes'))} | {gib(ref.get('peak_bytes'))} | {x(r.get('memory_ratio'))} | "
                   f"{r.get('max_abs_output_difference', 0):.1e} |")
    out += ["", "Timed steps: " + ", ".join(f"{r['model']}/{r['dataset_name']}: {r['steps']} (+{r['warmup']} "
                                             "warm-up)" for r in entry["runs"]) + ".", "",
            f"![model step]({results['charts'].get('model', 'model.png')})", ""]
    return out

