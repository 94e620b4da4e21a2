"""How close one training step comes to the machine's bound (`pgti bench model`).

- `count_work(step)`: one step under a dispatch mode that counts the dense FLOPs of every
  matrix product (torch's own FLOP formulas, `torch.utils.flop_counter`), remembers the GEMM
  shapes that carry them, and counts the sparse products separately: 2 x nnz x width FLOPs
  and the bytes they must move (the CSR arrays, the dense operand once, the result once).
- `gemm_rate(shape)`: this machine's measured rate for one GEMM shape (best of a few runs,
  same threads, same device). The rate at the model's shapes is their FLOP-weighted harmonic
  mean (the step's own GEMM shapes, measured until they cover 80% of its GEMM FLOPs), and
  `bound_fraction` = dense FLOPs / (step time x that rate): 1.0 would be a step that is
  nothing but its own GEMMs, each at this machine's full speed for its shape.
- `profile_top(step)`: the ops with the most self time (torch.profiler), for the report.
"""
from __future__ import annotations

import time
from collections import defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

_GEMMS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmm_", "aten::baddbmm_"}
_IN_PLACE = {"aten::addmm_", "aten::baddbmm_"}  # FlopCounterMode (torch 2.13) does not count these


class _SparseAndShapes(TorchDispatchMode):
    """Counts sparse products (FLOPs, bytes) and the dense FLOPs per GEMM shape."""

    def __init__(self):
        super().__init__()
        self.sparse_flops = self.sparse_bytes = self.in_place_flops = 0
        self.shapes: dict[tuple[int, int, int], int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        sparse = [t for t in tensors if t.layout != torch.strided]
        if sparse:
            a, dense = sparse[0], next((t for t in tensors if t.layout == torch.strided), None)
            width = dense.shape[-1] if dense is not None and dense.dim() == 2 else 1
            nnz = a._nnz() if a.layout == torch.sparse_coo else a.values().numel()
            item = a.values().element_size()
            self.sparse_flops += 2 * nnz * width
            self.sparse_bytes += nnz * (item + 8) + (dense.numel() * dense.element_size() if dense is not None else 0) \
                + (out.numel() * out.element_size() if isinstance(out, torch.Tensor) else 0)
            return out
        name = func._schema.name
        if name in _GEMMS:
            a, b = (args[0], args[1]) if name in ("aten::mm", "aten::bmm") else (args[1], args[2])
            batch = a.shape[0] if a.dim() == 3 else 1
            m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
            self.shapes[(m, k, n)] += 2 * batch * m * k * n
            if name in _IN_PLACE:
                self.in_place_flops += 2 * batch * m * k * n
        return out


def count_work(step) -> dict:
    """Dense and sparse work of one call of `step` (it runs once)."""
    shapes = _SparseAndShapes()
    with FlopCounterMode(display=False) as flops, shapes:
        step()
    dense = flops.get_total_flops() + shapes.in_place_flops
    top = sorted(shapes.shapes.items(), key=lambda kv: -kv[1])
    gemm_total = sum(shapes.shapes.values()) or 1
    return {"dense_flop": int(dense), "sparse_flop": int(shapes.sparse_flops), "sparse_bytes": int(shapes.sparse_bytes),
            "gemm_shapes": [{"m": m, "k": k, "n": n, "share": f / gemm_total} for (m, k, n), f in top[:8]]}


def gemm_rate(m: int, k: int, n: int, device: torch.device, seconds: float = 0.5) -> float:
    """FLOP/s of `[m, k] @ [k, n]` in float32 on `device`: the best of repeated timings."""
    a = torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)
    out = torch.empty(m, n, device=device)
    torch.mm(a, b, out=out)  # warm-up
    best, began = float("inf"), time.perf_counter()
    while time.perf_counter() - began < seconds or best == float("inf"):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best


def profile_top(step, device: torch.device, count: int = 5) -> list[dict]:
    """The `count` ops with the most self time in one call of `step`."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.key_averages()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    total = sum(getattr(e, key) for e in events) or 1
    rows = sorted(events, key=lambda e: -getattr(e, key))[:count]
    return [{"op": e.key, "calls": e.count, "self_ms": getattr(e, key) / 1000, "share": getattr(e, key) / total}
            for e in rows]


def bound_report(step, device: torch.device, step_seconds: float, profile_step=None) -> dict:
    """Work, rates and the bound fraction of `step` (which runs twice more: counting, profile).
    `profile_step`: profile this one instead (a compiled step, whose FLOPs `step` counts)."""
    work = count_work(step)
    covered = seconds_per_flop = 0.0
    for shape in work["gemm_shapes"]:
        shape["gflops"] = gemm_rate(shape["m"], shape["k"], shape["n"], device, seconds=0.3) / 1e9
        covered, seconds_per_flop = covered + shape["share"], seconds_per_flop + shape["share"] / shape["gflops"]
        if covered >= 0.8:
            break
    work["gemm_shapes"] = [shape for shape in work["gemm_shapes"] if "gflops" in shape]
    at_shape = 1e9 * covered / seconds_per_flop if covered else gemm_rate(2048, 2048, 2048, device)
    square = gemm_rate(2048, 2048, 2048, device)
    achieved = work["dense_flop"] / step_seconds
    return {**work, "achieved_gflops": achieved / 1e9, "gemm_gflops_model_shape": at_shape / 1e9,
            "gemm_gflops_2048": square / 1e9, "bound_fraction": achieved / at_shape,
            "profile_top": profile_top(profile_step or step, device)}


def format_bound(r: dict) -> list[str]:
    shapes = ", ".join(f"[{s['m']}x{s['k']}]x[{s['k']}x{s['n']}] {100 * s['share']:.0f}% at {s['gflops']:.0f}"
                       for s in r["gemm_shapes"][:3])
    lines = [f"work         {r['dense_flop'] / 1e9:.1f} dense GFLOP/step; sparse {r['sparse_flop'] / 1e9:.2f} GFLOP, "
             f"{r['sparse_bytes'] / 1e9:.2f} GB moved",
             f"gemm         the step's shapes: {shapes} GFLOP/s, ...: {r['gemm_gflops_model_shape']:.1f} GFLOP/s "
             f"together; 2048^3 at {r['gemm_gflops_2048']:.1f} GFLOP/s",
             f"bound        {r['achieved_gflops']:.1f} GFLOP/s achieved: bound_fraction {r['bound_fraction']:.2f}",
             "profile      " + "; ".join(f"{p['op']} {100 * p['share']:.0f}% ({p['calls']} calls)"
                                         for p in r["profile_top"])]
    return lines
