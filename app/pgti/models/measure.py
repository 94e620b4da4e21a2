"""Time and peak memory of one training step (forward + backward) of a model.

Memory, labelled by how it was measured:
- CUDA: the caching allocator's peak (`torch.cuda.max_memory_allocated`) during the step,
  minus what was allocated before it (parameters, inputs): exact tensor bytes.
- CPU (Linux): the growth of the peak resident set (VmHWM, reset through
  `/proc/self/clear_refs`) over the resident set before the step, in a fresh child process
  started with glibc's mmap threshold pinned at 128 KiB (`MALLOC_MMAP_THRESHOLD_`): every
  tensor above that size is mapped when allocated and unmapped when freed, so the resident set
  follows the live tensors (to page granularity) rather than what the allocator keeps cached.
  The child builds the same model (same seed) on the same batch and warms up once first.
- CPU elsewhere: not measured (None).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from pgti.allocator import release_free_heap

MMAP_THRESHOLD = 128 * 1024
CPU_METHOD = ("CPU peak resident set growth in a child process (Linux VmHWM reset via "
              "/proc/self/clear_refs; glibc mmap threshold pinned at 128 KiB)")


@dataclass
class StepMemory:
    peak_bytes: int | None
    method: str


def human_bytes(n: float | None) -> str:
    if n is None:
        return "n/a"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024


def training_step(model, x, y=None, global_step: int = 0):
    """A closure running forward + MAE backward on `(x, y)`; returns the output."""
    def step():
        for p in model.parameters():
            p.grad = None
        out = model(x, y, global_step=global_step)
        target = y[..., : out.shape[-1]] if y is not None else torch.zeros_like(out)
        (out - target).abs().mean().backward()
        return out
    return step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_step(step, device: torch.device, steps: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of `steps` calls of `step` after `warmup` calls."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def cuda_step_memory(step, device: torch.device) -> StepMemory:
    """Allocator peak of one `step` on a CUDA device, above what was allocated before."""
    synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    synchronize(device)
    return StepMemory(torch.cuda.max_memory_allocated(device) - before,
                      "CUDA allocator peak (torch.cuda.max_memory_allocated) minus allocated before")


def _proc_status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def rss_step_growth(step) -> int | None:
    """Peak resident set growth (bytes) while running `step` once; None off Linux."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (Linux >= 4.0)
    except OSError:
        return None
    before = _proc_status("VmRSS:")
    step()
    return max(0, _proc_status("VmHWM:") - before)


# --------------------------------------------------------------------------- the child process


def measure_request(*, model: str, data: str, kwargs: dict, batch_size: int, global_step: int,
                    reference: str | None = None, compile: bool = False) -> dict:
    """What a child needs to rebuild a model and its batch. `kwargs` are `build_model`'s
    keyword arguments without the graph (the child reads it from `data`)."""
    kwargs = {k: v for k, v in kwargs.items() if k not in ("edge_index", "edge_weight")}
    return dict(model=model, data=str(data), kwargs=kwargs, batch_size=batch_size,
                global_step=global_step, reference=reference, threads=torch.get_num_threads(), compile=compile)


def cpu_step_memory(request: dict, timeout: float = 3600) -> StepMemory:
    """Peak memory of one CPU training step, measured in a fresh child (see the module docstring)."""
    if not Path("/proc/self/clear_refs").exists():
        return StepMemory(None, "not measured: needs Linux /proc/self/clear_refs")
    release_free_heap()  # the parent's kept high-water mark must not sit beside the child
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MMAP_THRESHOLD),
               PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", "pgti.models.measure"], input=json.dumps(request),
                          capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory measurement child failed ({done.returncode}): {last}")
    return StepMemory(json.loads(done.stdout.strip().splitlines()[-1])["peak_bytes"], CPU_METHOD)


def _child(request: dict) -> dict:
    import warnings

    from pgti.data.format import open_dataset
    from pgti.models.example import example_batch
    from pgti.models.registry import build_model

    warnings.simplefilter("ignore")
    torch.set_num_threads(request["threads"])
    info = open_dataset(request["data"])
    kwargs = dict(request["kwargs"], edge_index=info.edge_index, edge_weight=info.edge_weight)
    torch.manual_seed(0)
    model = build_model(request["model"], **kwargs)
    if request["reference"]:
        from pgti.bench import reference as references  # torch_geometric: import only when needed

        pgti_model, model = model, getattr(references, request["reference"])(**kwargs)
        model.load_state_dict(pgti_model.state_dict())
        del pgti_model
    x, y = example_batch(info, batch_size=request["batch_size"], input_steps=kwargs["input_steps"],
                         output_steps=kwargs["output_steps"], input_channels=kwargs["input_channels"],
                         output_channels=kwargs["output_channels"])
    model.train()
    if request.get("compile"):
        from pgti.models.compiled import compile_model, probe_step

        model, failure = compile_model(model, probe_step(x, y, request["global_step"]))
        if failure:
            raise RuntimeError(f"the memory child could not compile the model: {failure}")
    step = training_step(model, x, y, global_step=request["global_step"])
    step()  # warm-up: lazy one-time state is not the step's memory
    return dict(peak_bytes=rss_step_growth(step))


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.stdin.read()))))
