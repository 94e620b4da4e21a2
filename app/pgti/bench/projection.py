"""The projection of dcrnn-pgt on the full PeMS dataset to 4..128 GPUs (a model, not a measurement).

`project`: epoch time and parallel efficiency of dcrnn-pgt on the full PeMS dataset
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
                     gpu_bandwidth x (pgti GB/s / memcpy GB/s measured by `pgti bench loader`)
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

import math

PGT_I_HEADLINE = {"speedup_over_ddp": 11.78, "gpus": 128,
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

METHODS = ("pgti", "pgt_i", "ddp")

METHOD_LABELS = {"pgti": "pgti (node-shared, GPU-index-batching, Horovod)",
                 "pgt_i": "PGT-I distributed-index-batching (model)",
                 "ddp": "standard DDP (materialized windows, calibrated)"}


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
        "pgt_i_batch_bytes": batch_size * 24 * n * (c + 1) * 4,  # PGT-I: x and y both every feature, float32 on GPU
    }


def projection_inputs(epoch_results: list[dict], loader_results: dict, allreduce: dict | None = None) -> dict:
    """Measured inputs of the projection: compute per window per sensor (dcrnn-pgt, largest
    dataset the epoch bench ran), pgti/memcpy efficiency (largest dataset of the loader bench)
    and PGT-I's per-window loader cost (smallest dataset of the loader bench)."""
    cpu = [r for r in epoch_results if r.get("model") == "dcrnn-pgt" and r.get("device") == "cpu" and "pipelines" in r]
    if not cpu:
        raise ValueError("the projection needs a dcrnn-pgt `pgti bench epoch` result")
    biggest = max(cpu, key=lambda r: r["num_nodes"])
    per = {}
    for name, p in biggest["pipelines"].items():
        compute = max(1e-9, p["median_step_s"] - p["median_load_s"])
        per[name] = compute / (biggest["batch_size"] * biggest["num_nodes"])
    inputs = {"compute_s_per_window_sensor": {"pgti": per["pgti"], "pgt_i": per["pgt_i"]},
              "compute_source": f"pgti bench epoch, dcrnn-pgt on {biggest['dataset_name']} "
                                f"(N={biggest['num_nodes']}, batch {biggest['batch_size']}), median step - median load"}
    loaders = [v for v in loader_results.values() if v and "results" in v]
    if loaders:
        def nodes(v):
            return v.get("num_nodes") or 0
        big = {r["method"]: r for r in max(loaders, key=nodes)["results"]}
        small_entry = min(loaders, key=nodes)
        small = {r["method"]: r for r in small_entry["results"]}
        if "pgti" in big and "memcpy" in big:
            inputs["pgti_memcpy_efficiency"] = min(1.0, big["pgti"]["gb_per_s"] / big["memcpy"]["gb_per_s"])
            inputs["memcpy_bytes_s"] = big["memcpy"]["gb_per_s"] * 1e9
        if "pgt_i" in small:
            inputs["pgt_i_loader_s_per_window"] = 1.0 / small["pgt_i"]["batches_per_s"] / small_entry["batch_size"]
    inputs.setdefault("pgti_memcpy_efficiency", 0.5)
    inputs.setdefault("pgt_i_loader_s_per_window", 50e-6)
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
    engine_cost = {"pgti": overhead.get("horovod", 0.0), "pgt_i": overhead.get("gloo", 0.0),
                   "ddp": overhead.get("gloo", 0.0)}
    compute = {m: inputs["compute_s_per_window_sensor"][k] * b * n / a["gpu_factor"]
               for m, k in (("pgti", "pgti"), ("pgt_i", "pgt_i"), ("ddp", "pgt_i"))}
    data = {"pgti": sizes["batch_bytes"] / (a["gpu_bandwidth_bytes_s"] * inputs["pgti_memcpy_efficiency"]),
            "pgt_i": b * inputs["pgt_i_loader_s_per_window"] + sizes["pgt_i_batch_bytes"] / a["gpu_bandwidth_bytes_s"]}
    grad_bytes = 4 * a["parameters"]

    def allreduce(w, method):
        ring = ring_allreduce_s(grad_bytes, w, a["link_bandwidth_bytes_s"], a["link_latency_s"])
        return ring + (engine_cost[method] if w > 1 else 0.0)

    # Calibrate DDP's effective fetch bandwidth on PGT-I's headline at its GPU count.
    w_ref, ratio = PGT_I_HEADLINE["gpus"], PGT_I_HEADLINE["speedup_over_ddp"]
    pgt_i_step_ref = compute["pgt_i"] + data["pgt_i"] + allreduce(w_ref, "pgt_i")
    ddp_data_ref = ratio * pgt_i_step_ref - compute["ddp"] - allreduce(w_ref, "ddp")
    remote = (w_ref - 1) / w_ref * sizes["batch_bytes"]
    ddp_bandwidth = remote / ddp_data_ref if ddp_data_ref > 0 else math.inf
    # For scale: DDP fed at the full link bandwidth instead (what the calibrated store is not).
    ddp_link_step = compute["ddp"] + remote / a["link_bandwidth_bytes_s"] + allreduce(w_ref, "ddp")
    rows = []
    for w in gpus:
        steps = sizes["train_windows"] // (b * w)
        per_step = {
            "pgti": compute["pgti"] + data["pgti"] + allreduce(w, "pgti"),
            "pgt_i": compute["pgt_i"] + data["pgt_i"] + allreduce(w, "pgt_i"),
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
            "ddp_at_link_bandwidth_vs_pgt_i": ddp_link_step / pgt_i_step_ref, "headline": PGT_I_HEADLINE, "memory": memory,
            "rows": rows}


def sensitivity(inputs: dict, assumptions: dict | None = None, scales=(0.25, 1.0, 4.0)) -> list[dict]:
    """pgti's efficiency at the largest GPU count and its speedup over PGT-I, for the CPU->GPU
    factor of `project` times each of `scales`."""
    base = project(inputs, assumptions)["assumptions"]["gpu_factor"]
    out = []
    for f in (base * s for s in scales):
        p = project(inputs, {**(assumptions or {}), "gpu_factor": f})
        w = max(r["gpus"] for r in p["rows"])
        pgti = next(r for r in p["rows"] if r["method"] == "pgti" and r["gpus"] == w)
        pgt_i = next(r for r in p["rows"] if r["method"] == "pgt_i" and r["gpus"] == w)
        out.append({"gpu_factor": f, "gpus": w, "pgti_efficiency": pgti["efficiency"],
                    "pgti_epoch_s": pgti["epoch_s"], "speedup_over_pgt_i": pgt_i["epoch_s"] / pgti["epoch_s"],
                    "speedup_over_ddp": pgti["speedup_over_ddp"]})
    return out
