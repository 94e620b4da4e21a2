"""Scaling: measured strong/weak scaling of `pgti train`, measured allreduce, projection to 128 GPUs.

Measured here (`measure_scaling`): `mpirun -np W python -m pgti.cli train ...` with dcrnn-pgt on
a synthetic dataset for W = 1, 2, 4 ranks, `train.max_steps` steps, reading samples/s from the
run's metrics.jsonl (`samples_per_s`: steps x per-rank batch x W / the epoch's wall time, the
first step included). Strong scaling keeps the global batch at 64 (64/W per rank); weak scaling
keeps 64 per rank (64 W global). Ranks beyond the cores are oversubscribed (`--oversubscribe`):
on a 2-core machine W = 4 measures contention, not scaling.

Measured allreduce (`measure_allreduce`): `pgti.bench.allreduce_worker` under `mpirun -np 2`,
float32 tensors of the models' parameter counts, per engine (mpi4py, Horovod, gloo), median.

Projected (`project`): epoch time and parallel efficiency of dcrnn-pgt on the full PeMS dataset
(11,160 sensors x 105,120 five-minute steps) on 4..128 GPUs, for pgti, PGT-I's
distributed-index-batching and standard DDP, from this model (every input in `assumptions`
and in the report):

    epoch(W)  = floor(S_train / (B W)) x step(W)            B = 64 windows per GPU per step
    step(W)   = compute + data + allreduce(W)               (no overlap assumed: conservative)
    compute   = (CPU compute s per window per sensor, measured by `pgti bench epoch` here)
                x B x N / gpu_factor       gpu_factor: stated; by default the A100's memory bandwidth
                                           over the memcpy bandwidth measured here by the loader
                                           bench (the sparse diffusion is memory-bound)
    data      pgti:  GPU-index-batching: one gather of the batch's bytes on the GPU at
                     gpu_bandwidth x (index GB/s / memcpy GB/s measured by `pgti bench loader`)
              PGT-I: its GPU path: B per-sample Python calls (the per-window cost its loader
                     showed here) + the collated float32 bytes at gpu_bandwidth
              DDP:   materialized windows do not fit (24x the raw array per rank, below), so, as
                     in PGT-I's baseline, windows come from a distributed in-memory store: the
                     remote share (W-1)/W of a batch's float32 bytes at an effective bandwidth
                     calibrated so that DDP/PGT-I = 11.78 at 128 GPUs (PGT-I's headline)
    allreduce = 2 (W-1)/W x bytes / link_bandwidth + 2 (W-1) x link_latency   (ring)
                + the engine's fixed cost per step measured here (allreduce of the model's
                gradient at W=2, engine median - MPI median): Horovod for pgti, gloo for the others
    efficiency(W) = step(W_min) / step(W): per-GPU throughput against the smallest GPU count
                (the per-GPU batch is fixed; epochs round the step count down)
"""
from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

PGTI_HEADLINE = {"speedup_over_ddp": 11.78, "gpus": 128,
                 "source": "PGT-I, arXiv 2507.11683v3 (SC'25): up to 11.78x over standard DDP with 128 GPUs"}
PEMS = {"num_nodes": 11_160, "num_steps": 105_120, "channels": 1}
DEFAULT_ASSUMPTIONS = {
    "gpu_factor": None,  # dcrnn-pgt step on one GPU vs this CPU; None: gpu_bandwidth / memcpy measured here
    "gpu_factor_fallback": 100.0,  # when no loader bench measured memcpy
    "gpu_bandwidth_bytes_s": 1.555e12,  # A100-40GB HBM2 (PGT-I ran on Polaris: 4 x A100 per node)
    "link_bandwidth_bytes_s": 25e9,  # Slingshot-11 / NVLink-class, per rank
    "link_latency_s": 5e-6,
    "gpu_memory_bytes": 40 * 2**30,
    "node_memory_bytes": 512 * 2**30,
    "gpus_per_node": 4,
    "batch_size": 64,
    "parameters": 150,  # dcrnn-pgt in PGT-I's configuration (C_in = C_out = 2, K = 3)
    "gpus": [4, 8, 16, 32, 64, 128],
}
METHODS = ("pgti", "pgt-i", "ddp")
METHOD_LABELS = {"pgti": "pgti (node-shared, GPU-index-batching, Horovod)",
                 "pgt-i": "PGT-I distributed-index-batching (model)",
                 "ddp": "standard DDP (materialized windows, calibrated)"}


# --------------------------------------------------------------------------- launching


def mpirun(ranks: int) -> list[str]:
    exe = shutil.which("mpirun") or shutil.which("mpiexec")
    if exe is None:
        raise RuntimeError("no mpirun on PATH: run `bash env/setup.sh` and `. env/activate.sh`")
    cmd = [exe, "-np", str(ranks)]
    if ranks > (os.cpu_count() or 1):
        cmd.append("--oversubscribe")
    return cmd


# Open MPI's launcher itself can fail to start, now and then, before any rank runs (PMIx's
# listener race, openpmix/openpmix#112-style; seen once in ~1,000 launches here). Such a launch
# is retried once; a failure of the program itself never is.
LAUNCHER_FAILURES = ("The PMIx server's listener thread failed to start",)


def launch(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run an mpirun command line; retry once if mpirun failed to start (see LAUNCHER_FAILURES)."""
    for attempt in (1, 2):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        started = not any(marker in done.stdout + done.stderr for marker in LAUNCHER_FAILURES)
        if done.returncode == 0 or started or attempt == 2:
            return done
        time.sleep(1.0)
    return done


def train_command(ranks: int, data, per_rank_batch: int, steps: int, run_dir, model: str = "dcrnn-pgt",
                  engine: str = "horovod") -> list[str]:
    sets = [f"data.path={data}", f"model.name={model}", f"train.batch_size={per_rank_batch}",
            f"train.max_steps={steps}", "train.epochs=1", "log.progress=lines", "log.plots=false",
            f"dist.engine={engine}", "checkpoint.every_minutes=0", "train.device=cpu"]
    return mpirun(ranks) + [sys.executable, "-m", "pgti.cli", "train", *[a for s in sets for a in ("--set", s)],
                            "--run-dir", str(run_dir)]


def run_training(ranks: int, data, per_rank_batch: int, steps: int, run_dir, model: str = "dcrnn-pgt",
                 engine: str = "horovod", timeout: float = 900) -> dict:
    """One `pgti train` launch; its last metrics.jsonl row, with the command and wall time."""
    run_dir = Path(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = train_command(ranks, data, per_rank_batch, steps, run_dir, model, engine)
    began = time.perf_counter()
    done = launch(cmd, timeout)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    row = rows[-1]
    return {"ranks": ranks, "per_rank_batch": per_rank_batch, "global_batch": per_rank_batch * ranks,
            "steps": row["global_step"], "samples_per_s": row["samples_per_s"], "epoch_time_s": row["epoch_time_s"],
            "wall_s": wall, "command": " ".join(map(str, cmd)), "load_average": os.getloadavg()[0]}


def measure_scaling(data, work_dir, ranks=(1, 2, 4), steps: int = 30, repeats: int = 1, global_batch: int = 64,
                    model: str = "dcrnn-pgt", engine: str = "horovod", log=print) -> list[dict]:
    """Strong (global batch fixed) and weak (per-rank batch fixed) runs, repeats interleaved.

    W = 1 is the same run for both (per-rank batch 64) and is launched once per repeat."""
    plan = []
    for w in ranks:
        if global_batch % w:
            raise ValueError(f"strong scaling: global batch {global_batch} is not divisible by W={w}")
        plan.append(("strong", w, global_batch // w))
        if w > 1:
            plan.append(("weak", w, global_batch))
    runs = []
    for repeat in range(repeats):
        for mode, w, batch in plan:
            run = run_training(w, data, batch, steps, Path(work_dir) / f"{mode}-w{w}-r{repeat}", model, engine)
            modes = ["strong", "weak"] if w == 1 else [mode]
            for m in modes:
                runs.append({**run, "mode": m, "repeat": repeat})
            log(f"  scaling {'/'.join(modes):<11} W={w} batch {batch}/rank: {run['samples_per_s']:8.1f} samples/s "
                f"({run['steps']} steps, {run['wall_s']:.0f} s wall, load {run['load_average']:.1f})")
    return runs


def summarize_scaling(runs: list[dict]) -> list[dict]:
    """Median samples/s per (mode, W) over repeats; speedup and efficiency against W = 1."""
    out = []
    for mode in ("strong", "weak"):
        by_w: dict[int, list[float]] = {}
        for r in runs:
            if r["mode"] == mode:
                by_w.setdefault(r["ranks"], []).append(r["samples_per_s"])
        base = statistics.median(by_w[min(by_w)]) if by_w else None
        for w in sorted(by_w):
            rate = statistics.median(by_w[w])
            speedup = rate / base if base else None
            out.append({"mode": mode, "ranks": w, "samples_per_s": rate, "samples_per_s_runs": by_w[w],
                        "speedup": speedup, "efficiency": speedup / (w / min(by_w)) if speedup else None})
    return out


def measure_allreduce(counts: list[int], ranks: int = 2, repeats: int = 50, inner: int = 10,
                      timeout: float = 600) -> dict:
    cmd = mpirun(ranks) + [sys.executable, "-m", "pgti.bench.allreduce_worker", "--counts",
                           ",".join(map(str, counts)), "--repeats", str(repeats), "--inner", str(inner)]
    done = launch(cmd, timeout)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("PGTI_ALLREDUCE ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"allreduce benchmark failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")
    result = json.loads(line[len("PGTI_ALLREDUCE "):])
    result["command"] = " ".join(cmd)
    return result


# --------------------------------------------------------------------------- projection


def ring_allreduce_s(nbytes: float, ranks: int, bandwidth: float, latency: float) -> float:
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) / ranks * nbytes / bandwidth + 2 * (ranks - 1) * latency


def pems_sizes(batch_size: int = 64) -> dict:
    """Sizes of the PeMS workload (float32; x: speed + time of day, y: speed, as trained)."""
    n, t, c = PEMS["num_nodes"], PEMS["num_steps"], PEMS["channels"]
    windows = t - 24 + 1
    train = round(0.7 * windows)
    x_values, y_values = 12 * (c + 1), 12 * c  # per sensor and window
    return {
        "num_nodes": n, "num_steps": t, "windows": windows, "train_windows": train,
        "raw_bytes": t * n * c * 4,
        "materialized_bytes_per_rank": windows * (x_values + y_values) * n * 4,
        "materialized_speed_only_bytes_per_rank": windows * 24 * n * c * 4,
        "batch_bytes": batch_size * (x_values + y_values) * n * 4,  # what index-batching gathers
        "pgt_batch_bytes": batch_size * 24 * n * (c + 1) * 4,  # PGT-I: x and y both every feature, float32 on GPU
    }


def projection_inputs(epoch_results: list[dict], loader_results: dict, allreduce: dict | None = None) -> dict:
    """Measured inputs of the projection: compute per window per sensor (dcrnn-pgt, largest
    dataset the epoch bench ran), index/memcpy efficiency (largest dataset of the loader bench)
    and PGT-I's per-window loader cost (smallest dataset of the loader bench)."""
    cpu = [r for r in epoch_results if r.get("model") == "dcrnn-pgt" and r.get("device") == "cpu" and "pipelines" in r]
    if not cpu:
        raise ValueError("the projection needs a dcrnn-pgt `pgti bench epoch` result")
    biggest = max(cpu, key=lambda r: r["num_nodes"])
    per = {}
    for name, p in biggest["pipelines"].items():
        compute = max(1e-9, p["median_step_s"] - p["median_load_s"])
        per[name] = compute / (biggest["batch_size"] * biggest["num_nodes"])
    inputs = {"compute_s_per_window_sensor": {"pgti": per["ours"], "pgt-i": per["pgti"]},
              "compute_source": f"pgti bench epoch, dcrnn-pgt on {biggest['dataset_name']} "
                                f"(N={biggest['num_nodes']}, batch {biggest['batch_size']}), median step - median load"}
    loaders = [v for v in loader_results.values() if v and "results" in v]
    if loaders:
        def nodes(v):
            return v.get("num_nodes") or 0
        big = {r["method"]: r for r in max(loaders, key=nodes)["results"]}
        small_entry = min(loaders, key=nodes)
        small = {r["method"]: r for r in small_entry["results"]}
        if "index" in big and "memcpy" in big:
            inputs["index_memcpy_efficiency"] = min(1.0, big["index"]["gb_per_s"] / big["memcpy"]["gb_per_s"])
            inputs["memcpy_bytes_s"] = big["memcpy"]["gb_per_s"] * 1e9
        if "per_sample_pgt" in small:
            inputs["pgt_loader_s_per_window"] = 1.0 / small["per_sample_pgt"]["batches_per_s"] / small_entry["batch_size"]
    inputs.setdefault("index_memcpy_efficiency", 0.5)
    inputs.setdefault("pgt_loader_s_per_window", 50e-6)
    inputs["engine_overhead_s"] = {"horovod": 0.0, "gloo": 0.0}
    if allreduce:
        small = min(r["count"] for r in allreduce["rows"])
        median = {r["engine"]: r["median_s"] for r in allreduce["rows"] if r["count"] == small}
        for engine in ("horovod", "gloo"):
            if engine in median and "mpi4py" in median:
                inputs["engine_overhead_s"][engine] = max(0.0, median[engine] - median["mpi4py"])
        inputs["engine_overhead_source"] = (f"allreduce of {small} floats at W={allreduce['ranks']} measured here: "
                                            "engine median - mpi4py median")
    return inputs


def project(inputs: dict, assumptions: dict | None = None) -> dict:
    """Epoch time and efficiency per method and GPU count (see the module docstring)."""
    a = {**DEFAULT_ASSUMPTIONS, **(assumptions or {})}
    b, gpus = a["batch_size"], list(a["gpus"])
    sizes = pems_sizes(b)
    n = sizes["num_nodes"]
    if not a.get("gpu_factor"):
        memcpy = inputs.get("memcpy_bytes_s")
        a["gpu_factor"] = a["gpu_bandwidth_bytes_s"] / memcpy if memcpy else a["gpu_factor_fallback"]
        a["gpu_factor_source"] = ("A100 memory bandwidth / memcpy bandwidth measured here" if memcpy
                                  else "fallback (no memcpy measurement)")
    else:
        a.setdefault("gpu_factor_source", "given")
    overhead = inputs.get("engine_overhead_s", {})
    engine_cost = {"pgti": overhead.get("horovod", 0.0), "pgt-i": overhead.get("gloo", 0.0),
                   "ddp": overhead.get("gloo", 0.0)}
    compute = {m: inputs["compute_s_per_window_sensor"][k] * b * n / a["gpu_factor"]
               for m, k in (("pgti", "pgti"), ("pgt-i", "pgt-i"), ("ddp", "pgt-i"))}
    data = {"pgti": sizes["batch_bytes"] / (a["gpu_bandwidth_bytes_s"] * inputs["index_memcpy_efficiency"]),
            "pgt-i": b * inputs["pgt_loader_s_per_window"] + sizes["pgt_batch_bytes"] / a["gpu_bandwidth_bytes_s"]}
    grad_bytes = 4 * a["parameters"]

    def allreduce(w, method):
        ring = ring_allreduce_s(grad_bytes, w, a["link_bandwidth_bytes_s"], a["link_latency_s"])
        return ring + (engine_cost[method] if w > 1 else 0.0)

    # Calibrate DDP's effective fetch bandwidth on PGT-I's headline at its GPU count.
    w_ref, ratio = PGTI_HEADLINE["gpus"], PGTI_HEADLINE["speedup_over_ddp"]
    pgt_step_ref = compute["pgt-i"] + data["pgt-i"] + allreduce(w_ref, "pgt-i")
    ddp_data_ref = ratio * pgt_step_ref - compute["ddp"] - allreduce(w_ref, "ddp")
    remote = (w_ref - 1) / w_ref * sizes["batch_bytes"]
    ddp_bandwidth = remote / ddp_data_ref if ddp_data_ref > 0 else math.inf
    # For scale: DDP fed at the full link bandwidth instead (what the calibrated store is not).
    ddp_link_step = compute["ddp"] + remote / a["link_bandwidth_bytes_s"] + allreduce(w_ref, "ddp")
    rows = []
    for w in gpus:
        steps = sizes["train_windows"] // (b * w)
        per_step = {
            "pgti": compute["pgti"] + data["pgti"] + allreduce(w, "pgti"),
            "pgt-i": compute["pgt-i"] + data["pgt-i"] + allreduce(w, "pgt-i"),
            "ddp": compute["ddp"] + (w - 1) / w * sizes["batch_bytes"] / ddp_bandwidth + allreduce(w, "ddp"),
        }
        for method in METHODS:
            rows.append({"method": method, "gpus": w, "steps_per_epoch": steps, "step_s": per_step[method],
                         "epoch_s": steps * per_step[method], "allreduce_s": allreduce(w, method),
                         "samples_per_s": b * w / per_step[method]})
    base = {m: next(r for r in rows if r["method"] == m and r["gpus"] == gpus[0]) for m in METHODS}
    for r in rows:
        r["efficiency"] = base[r["method"]]["step_s"] / r["step_s"]
        ddp = next(x for x in rows if x["method"] == "ddp" and x["gpus"] == r["gpus"])
        r["speedup_over_ddp"] = ddp["epoch_s"] / r["epoch_s"]
    gpu = a["gpu_memory_bytes"]
    memory = {
        "raw_bytes": sizes["raw_bytes"],
        "pgti_node_bytes": sizes["raw_bytes"],  # one copy per node (partitioned: its span only)
        "pgt_i_gpu_bytes": sizes["raw_bytes"] * 2,  # float32 speed + time of day, a full copy per GPU
        "ddp_rank_bytes": sizes["materialized_bytes_per_rank"],
        "ddp_node_bytes": sizes["materialized_bytes_per_rank"] * a["gpus_per_node"],
        "ddp_fits_gpu": sizes["materialized_bytes_per_rank"] <= gpu,
        "ddp_fits_node": sizes["materialized_bytes_per_rank"] * a["gpus_per_node"] <= a["node_memory_bytes"],
    }
    return {"assumptions": a, "inputs": inputs, "sizes": sizes, "compute_s": compute, "data_s": data,
            "engine_cost_s": engine_cost,
            "ddp_effective_bandwidth_bytes_s": ddp_bandwidth,
            "ddp_at_link_bandwidth_vs_pgt_i": ddp_link_step / pgt_step_ref, "headline": PGTI_HEADLINE, "memory": memory,
            "rows": rows}


def sensitivity(inputs: dict, assumptions: dict | None = None, scales=(0.25, 1.0, 4.0)) -> list[dict]:
    """pgti's efficiency at the largest GPU count and its speedup over PGT-I, for the CPU->GPU
    factor of `project` times each of `scales`."""
    base = project(inputs, assumptions)["assumptions"]["gpu_factor"]
    out = []
    for f in (base * s for s in scales):
        p = project(inputs, {**(assumptions or {}), "gpu_factor": f})
        w = max(r["gpus"] for r in p["rows"])
        ours = next(r for r in p["rows"] if r["method"] == "pgti" and r["gpus"] == w)
        theirs = next(r for r in p["rows"] if r["method"] == "pgt-i" and r["gpus"] == w)
        out.append({"gpu_factor": f, "gpus": w, "pgti_efficiency": ours["efficiency"],
                    "pgti_epoch_s": ours["epoch_s"], "speedup_over_pgt_i": theirs["epoch_s"] / ours["epoch_s"],
                    "speedup_over_ddp": ours["speedup_over_ddp"]})
    return out


# --------------------------------------------------------------------------- charts


def chart_measured(summary: list[dict], path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

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
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def chart_projection(projection: dict, path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

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
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def main(argv=None) -> int:
    """`python -m pgti.bench.scaling --data FILE [--ranks 1,2,4] [--steps N]`: the measured part alone."""
    import argparse
    import tempfile

    p = argparse.ArgumentParser(prog="python -m pgti.bench.scaling", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--ranks", default="1,2,4")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        runs = measure_scaling(args.data, work, [int(w) for w in args.ranks.split(",")], args.steps, args.repeats)
    print(json.dumps(summarize_scaling(runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
