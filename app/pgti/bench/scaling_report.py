"""The `scaling` section of `pgti bench all` (measured scaling, allreduce, the PeMS projection):
report.md lines, headlines and charts."""
from __future__ import annotations

from pathlib import Path

from pgti.bench.format import dur, gib, pyplot, save_figure, x
from pgti.bench.projection import METHOD_LABELS, METHODS


def headlines(results: dict) -> list[tuple[str, str, str]]:
    """(figure, ratio, from) rows of the report's headline table."""
    sections, rows = results["sections"], []
    scaling = sections.get("scaling") or {}
    for row in scaling.get("summary") or []:
        if row["ranks"] == 2:
            rows.append((f"measured {row['mode']} scaling efficiency, W=2 on 2 cores", f"{row['efficiency']:.2f}",
                         f"{row['samples_per_s']:.0f} samples/s vs W=1"))
    projection = scaling.get("projection")
    if projection:
        w = max(r["gpus"] for r in projection["rows"])
        pgti = next(r for r in projection["rows"] if r["method"] == "pgti" and r["gpus"] == w)
        pgt_i = next(r for r in projection["rows"] if r["method"] == "pgt_i" and r["gpus"] == w)
        rows.append((f"projected, PeMS at {w} GPUs: pgti vs PGT-I (model)", x(pgt_i["epoch_s"] / pgti["epoch_s"]),
                     f"epoch {dur(pgti['epoch_s'])} vs {dur(pgt_i['epoch_s'])}; efficiency "
                     f"{pgti['efficiency']:.2f} vs {pgt_i['efficiency']:.2f}"))
        rows.append((f"projected, PeMS at {w} GPUs: pgti vs standard DDP (model)", x(pgti["speedup_over_ddp"]),
                     f"PGT-I reported {projection['headline']['speedup_over_ddp']}x over DDP (the DDP model is "
                     "calibrated on it)"))
    return rows


def charts(results: dict, out: Path) -> dict:
    """Chart name -> a function drawing it into the directory `out` (returns its path)."""
    s = results["sections"]["scaling"]
    made = {"scaling": lambda: chart_measured(
        s["summary"], out / "scaling.png", f"pgti train, dcrnn-pgt on {s['dataset']}, "
        f"{results['machine']['cpus_available']} cores (W > cores: oversubscribed)")}
    if s.get("projection"):
        made["projection"] = lambda: chart_projection(
            s["projection"], out / "projection.png", "PeMS (11,160 sensors x 105,120 steps), dcrnn-pgt, batch 64 "
            "per GPU: projected (model, not measured)")
    return made


def chart_measured(summary: list[dict], path, title: str) -> Path:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for mode, marker in (("strong", "o"), ("weak", "s")):
        rows = [r for r in summary if r["mode"] == mode]
        if not rows:
            continue
        ws = [r["ranks"] for r in rows]
        axes[0].plot(ws, [r["samples_per_s"] for r in rows], marker=marker, label=f"{mode} scaling")
        axes[1].plot(ws, [r["efficiency"] for r in rows], marker=marker, label=f"{mode} scaling")
    ws = sorted({r["ranks"] for r in summary})
    axes[1].plot(ws, [1.0] * len(ws), "k:", lw=1, label="ideal")
    axes[0].set_ylabel("samples/s (global)")
    axes[1].set_ylabel("parallel efficiency")
    axes[1].set_ylim(0, 1.1)
    for ax in axes:
        ax.set_xlabel("MPI ranks W (oversubscribed beyond the cores)")
        ax.set_xticks(ws)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path, title)


def chart_projection(projection: dict, path, title: str) -> Path:
    plt = pyplot()

    rows = projection["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        ws = [r["gpus"] for r in mine]
        axes[0].plot(ws, [r["epoch_s"] for r in mine], marker="o", label=METHOD_LABELS[method])
        axes[1].plot(ws, [r["efficiency"] for r in mine], marker="o", label=METHOD_LABELS[method])
        if method != "ddp":
            axes[2].plot(ws, [r["speedup_over_ddp"] for r in mine], marker="o", label=METHOD_LABELS[method])
    h = projection["headline"]
    axes[2].scatter([h["gpus"]], [h["speedup_over_ddp"]], marker="*", s=160, color="k", zorder=5,
                    label=f"PGT-I reported: {h['speedup_over_ddp']}x at {h['gpus']} GPUs")
    axes[0].set_ylabel("projected epoch time (s)")
    axes[0].set_yscale("log")
    axes[1].set_ylabel(f"efficiency vs {rows[0]['gpus']} GPUs (per-GPU throughput)")
    axes[1].set_ylim(0, 1.05)
    axes[2].set_ylabel("speedup over standard DDP")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("GPUs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path, title)


def markdown(results: dict) -> list[str]:
    """The `scaling` section of report.md."""
    entry = results["sections"]["scaling"]
    cores = results["machine"]["cpus_available"]
    runs = entry["runs"]
    out = [f"**Measured** on this machine: `mpirun -np W python -m pgti.cli train` with dcrnn-pgt on the "
           f"synthetic `{entry['dataset']}` dataset, Horovod engine, `train.max_steps={runs[0]['steps'] if runs else '?'}`, "
           f"samples/s read from the run's metrics.jsonl (all steps of the run, the first included). Strong "
           f"scaling: global batch 64 (64/W per rank); weak: 64 per rank. **The machine has {cores} cores: "
           f"W > {cores} ranks are oversubscribed** and show contention, not scaling (as does any other work on "
           "the machine). (`pgti train` builds dcrnn-pgt with hidden = C_out = the target channels, 1: 57 "
           "parameters; `model.params.hidden_channels=2` gives the PGT-I cell of the other sections, 150.)", "",
           "| mode | W | per-rank batch | samples/s (median; runs) | speedup | efficiency |",
           "|---|---:|---:|---:|---:|---:|"]
    for row in entry["summary"]:
        batch = 64 // row["ranks"] if row["mode"] == "strong" else 64
        runs_text = ", ".join(f"{v:.0f}" for v in row["samples_per_s_runs"])
        out.append(f"| {row['mode']} | {row['ranks']} | {batch} | {row['samples_per_s']:.0f} ({runs_text}) | "
                   f"{row['speedup']:.2f} | {row['efficiency']:.2f} |")
    if runs:
        out += ["", f"Example command: `{runs[-1]['command']}`"]
    out += ["", f"![measured scaling]({results['charts'].get('scaling', 'scaling.png')})", ""]
    ar = entry["allreduce"]
    names = {v: k for k, v in ar.get("models", {}).items()}
    out += [f"**Allreduce** of a float32 tensor of each model's parameter count, W={ar['ranks']} on this machine "
            f"(shared memory), {ar['repeats']} samples of {ar['inner']} back-to-back allreduces, interleaved across "
            "engines, median (`python -m pgti.bench.allreduce_worker`):", "",
            "| engine | tensor | bytes | median | min |", "|---|---|---:|---:|---:|"]
    for row in ar["rows"]:
        out.append(f"| {row['engine']} | {names.get(row['count'], row['count'])} ({row['count']:,} floats) | "
                   f"{row['bytes']:,} | {row['median_s'] * 1e6:.0f} us | {row['min_s'] * 1e6:.0f} us |")
    p = entry.get("projection")
    if not p:
        return out
    a, inputs, sizes, mem = p["assumptions"], p["inputs"], p["sizes"], p["memory"]
    out += ["", "**Projection** (a model, not a measurement) of dcrnn-pgt on the full PeMS dataset "
            f"({sizes['num_nodes']:,} sensors x {sizes['num_steps']:,} steps, {sizes['train_windows']:,} training "
            f"windows), batch {a['batch_size']} per GPU, on 4-128 GPUs:", "",
            "- epoch(W) = floor(train windows / (64 W)) x (compute + data + allreduce(W)), no overlap assumed;",
            f"- compute: measured here ({inputs['compute_source']}): pgti "
            f"{inputs['compute_s_per_window_sensor']['pgti'] * 1e6:.3f} us and PGT-I "
            f"{inputs['compute_s_per_window_sensor']['pgt_i'] * 1e6:.3f} us per window per sensor, times 64 x "
            f"{sizes['num_nodes']:,} sensors, divided by a **stated CPU -> GPU factor of {a['gpu_factor']:.0f}** "
            f"({a.get('gpu_factor_source')}: {a['gpu_bandwidth_bytes_s'] / 1e12:.2f} TB/s over "
            f"{inputs.get('memcpy_bytes_s', 0) / 1e9:.1f} GB/s; the sparse diffusion is memory-bound; no GPU was "
            f"available to measure it): {p['compute_s']['pgti'] * 1e3:.2f} ms and {p['compute_s']['pgt_i'] * 1e3:.2f} "
            "ms per step (the CPU ratio between the two implementations is assumed to carry over to GPUs);",
            f"- data: pgti gathers on the GPU (GPU-index-batching): {sizes['batch_bytes'] / 1e6:.0f} MB per step at "
            f"{a['gpu_bandwidth_bytes_s'] / 1e12:.2f} TB/s x {inputs['pgti_memcpy_efficiency']:.2f} (pgti GB/s / "
            f"memcpy GB/s, measured by the loader bench) = {p['data_s']['pgti'] * 1e3:.3f} ms; PGT-I's GPU path: 64 "
            f"per-sample calls at {inputs['pgt_i_loader_s_per_window'] * 1e6:.0f} us (its per-window loader cost "
            f"measured here) + {sizes['pgt_i_batch_bytes'] / 1e6:.0f} MB collated = {p['data_s']['pgt_i'] * 1e3:.2f} ms;",
            f"- allreduce: ring, 2(W-1)/W x {4 * a['parameters']} bytes / {a['link_bandwidth_bytes_s'] / 1e9:g} GB/s + "
            f"2(W-1) x {a['link_latency_s'] * 1e6:g} us (Slingshot/NVLink-class assumption), plus each engine's "
            f"fixed cost per step measured here ({inputs.get('engine_overhead_source', 'not measured')}): Horovod "
            f"{p['engine_cost_s']['pgti'] * 1e3:.2f} ms for pgti (its cycle time), gloo "
            f"{p['engine_cost_s']['pgt_i'] * 1e3:.2f} ms for PGT-I and DDP;",
            f"- **standard DDP cannot hold PeMS**: materialized windows are 24x the raw array per rank "
            f"({gib(sizes['materialized_speed_only_bytes_per_rank'])} for the speed channel alone, "
            f"{gib(mem['ddp_rank_bytes'])} with x's time of day) against {gib(a['gpu_memory_bytes'])} of GPU "
            f"memory and {gib(mem['ddp_node_bytes'])} for {a['gpus_per_node']} ranks on a "
            f"{gib(a['node_memory_bytes'])} node (raw array {gib(mem['raw_bytes'])}). As in PGT-I's DDP baseline, "
            "its windows come from a distributed in-memory store: each step fetches the remote share (W-1)/W of a "
            f"batch ({sizes['batch_bytes'] / 1e6:.0f} MB) at an effective bandwidth that we **calibrate** so that the "
            f"model reproduces PGT-I's reported {p['headline']['speedup_over_ddp']}x at "
            f"{p['headline']['gpus']} GPUs: {p['ddp_effective_bandwidth_bytes_s'] / 1e9:.3f} GB/s per rank "
            f"(fed at the full {a['link_bandwidth_bytes_s'] / 1e9:g} GB/s link instead, DDP would be only "
            f"{p['ddp_at_link_bandwidth_vs_pgt_i']:.2f}x slower than PGT-I per step: the reported gap is the data "
            "store's movement and overheads, which the calibration lumps together).", "",
            "| GPUs | steps/epoch | " + " | ".join(f"{METHOD_LABELS[m]} epoch (efficiency)"
                                                 for m in METHODS) + " | pgti vs PGT-I | pgti vs DDP |",
            "|---:|---:|" + "---:|" * len(METHODS) + "---:|---:|"]
    for w in a["gpus"]:
        row = {r["method"]: r for r in p["rows"] if r["gpus"] == w}
        cells = " | ".join(f"{dur(row[m]['epoch_s'])} ({row[m]['efficiency']:.2f})" for m in METHODS)
        out.append(f"| {w} | {row['pgti']['steps_per_epoch']} | {cells} | "
                   f"{x(row['pgt_i']['epoch_s'] / row['pgti']['epoch_s'])} | {x(row['pgti']['speedup_over_ddp'])} |")
    out += ["", "Sensitivity to the CPU -> GPU factor (at the largest GPU count):", "",
            "| factor | pgti epoch | pgti efficiency | pgti vs PGT-I | pgti vs DDP |", "|---:|---:|---:|---:|---:|"]
    for s in p.get("sensitivity", []):
        out.append(f"| {s['gpu_factor']:.0f} | {dur(s['pgti_epoch_s'])} | {s['pgti_efficiency']:.2f} | "
                   f"{x(s['speedup_over_pgt_i'])} | {x(s['speedup_over_ddp'])} |")
    out += ["", f"![projection]({results['charts'].get('projection', 'projection.png')})", ""]
    return out

