"""The machine a benchmark ran on: what it is (cores, memory, versions) and how busy it is now."""
from __future__ import annotations

import os
import platform
import time

from pgti.bench.format import gib


def machine_info() -> dict:
    from pgti.envinfo import environment

    info = {"hostname": platform.node(), "cpus": os.cpu_count(),
            "cpus_available": available_cpus(),
            "cpu_model": _cpu_model(), "memory_bytes": _mem_total(), "load_average_start": os.getloadavg()}
    try:
        info["versions"] = environment()
    except Exception as exc:  # pragma: no cover - reporting must not fail on an odd install
        info["versions"] = {"error": str(exc)}
    return info


def available_cpus() -> int:
    """The cores this process may run on (its CPU affinity: a job's cpuset, not the whole node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def busy_cores(seconds: float = 0.5) -> float:
    """Cores of this process's CPU set that other work keeps busy now: their non-idle time over a
    short sample of /proc/stat (this process sleeps meanwhile), summed over the CPUs it may run
    on (a job's cpuset, not the whole node). The 1-minute load average, the fallback where /proc
    is missing, lags by a minute: right after a benchmark's own previous section it still
    reports cores busy that are idle again (seen: 1.3-1.6 on an idle 2-core machine)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None

    def sample() -> dict[int, tuple[float, float]]:
        per_cpu = {}
        with open("/proc/stat") as f:
            for line in f:
                name, *values = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                cpu = int(name[3:])
                if allowed is not None and cpu not in allowed:
                    continue
                fields = [float(v) for v in values[:8]]  # guest time is already inside user/nice
                idle = fields[3] + fields[4]  # idle + iowait
                per_cpu[cpu] = (sum(fields) - idle, sum(fields))
        return per_cpu

    try:
        before = sample()
        time.sleep(seconds)
        after = sample()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    busy = 0.0
    for cpu, (busy1, total1) in after.items():
        busy0, total0 = before.get(cpu, (busy1, total1))
        if total1 > total0:
            busy += (busy1 - busy0) / (total1 - total0)
    return busy if after else os.getloadavg()[0]


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int | None:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def markdown(results: dict) -> list[str]:
    """report.md's lines on the machine, its load, the versions and the GPU."""
    meta, machine = results["meta"], results["machine"]
    versions = machine.get("versions", {})
    return [
        f"Machine: {machine['cpu_model']}, {machine['cpus_available']} cores available, "
        f"{gib(machine.get('memory_bytes'))} memory, host `{machine['hostname']}`. "
        f"1-minute load average {machine['load_average_start'][0]:.1f} at the start and "
        f"{meta.get('load_average_end', [0])[0]:.1f} at the end (the benchmark's own processes count too; other "
        "work on the machine makes absolute figures noisy); every headline is a ratio of two methods measured "
        "in the same run, interleaved where the benchmark allows.", "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if k in (
            "python", "torch", "numpy", "h5py", "mpi", "mpi4py", "horovod", "pgti")) + ".", "",
        "GPU: " + ("available: " + ", ".join(versions.get("gpus") or []) if results["gpu"]["available"]
                   else "**no GPU was available for this run**; " + results["gpu"]["note"] + ".") + "",
        "",
    ]


def sync(device) -> None:
    """Wait for a GPU's queued work (timings); nothing on a CPU."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
