"""`pgti bench memory`: node memory of each data placement, measured on real MPI runs.

For every method and rank count W it launches `mpirun -np W` workers that hold the data the
method's way and gather a few training batches, while this process samples the node's
memory every 50 ms: the summed PSS of all ranks (shared pages counted once, split between
the processes that map them; /proc/PID/smaps_rollup) and each rank's peak RSS (VmHWM).

  materialized      standard DDP data loading: every rank holds every window copied out
                    (x and y of DCRNN's generate_training_data / PyG-Temporal's signal)
  per-rank copy     PGT-I's distributed index-batching: every rank reads the raw array into
                    its own memory and slices windows by index
  node-shared       pgti: one copy per node in MPI shared memory, broadcast from rank 0
  node-shared part. pgti with data.placement=partitioned (local shuffle): each node holds
                    only its ranks' time span. Here every rank is its own simulated node
                    (PGTI_RANKS_PER_NODE=1) and the figure is the largest node's PSS, i.e. what
                    one node of a W-node job would hold

Across hosts (`--hosts H`, W/H ranks per host; the hosts come from the batch allocation or a
`--hostfile` in $PGTI_MPIRUN_ARGS): a sampler outside the job cannot see the other hosts, so
every rank samples its own PSS every 50 ms and reports its peak with its host name; a host's
figure is the sum over its ranks, the node figure the largest host's. Nodes are the real ones
then, partitioned placement included.

A configuration whose estimated memory does not fit in the machine's available memory is not
launched; it is reported as impossible with the memory it would need (the estimate).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from pgti.bench.bounds import check_batch, counts
from pgti.bench.format import gib_column
from pgti.bench.scaling import mpirun
from pgti.outputs import add_force_argument, check_output, write_text_output

METHODS = ("materialized", "per-rank-copy", "node-shared", "node-shared-partitioned")
LABELS = {"materialized": "materialized (standard DDP)", "per-rank-copy": "per-rank copy (PGT-I)",
          "node-shared": "node-shared (pgti)", "node-shared-partitioned": "node-shared partitioned (pgti)"}
WORKER_BATCHES = 8
RUNTIME_BYTES = 300 << 20  # python + torch + MPI per rank (for the estimates only)


# --------------------------------------------------------------------------- worker (under mpirun)


class _OwnPeak:
    """This process's peak PSS, sampled every 50 ms by a thread (for runs across hosts)."""

    def __init__(self):
        self.peak = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, _pss(os.getpid()))
            self.done.wait(0.05)

    def stop(self) -> int:
        self.done.set()
        self.thread.join()
        return max(self.peak, _pss(os.getpid()))


def _worker(method: str, data: str, batch_size: int, real_nodes: bool = False) -> None:
    from pgti.data.batcher import IndexBatcher
    from pgti.data.format import read_signals
    from pgti.data.splits import make_splits
    from pgti.data.windows import WindowSpec
    from pgti.distributed import partition
    from pgti.distributed.load import load_signals, node_time_span, open_dataset_once
    from pgti.distributed.world import abort_on_error, init_world

    own = _OwnPeak() if real_nodes else None  # across hosts only: one host is sampled from outside
    simulated = method == "node-shared-partitioned" and not real_nodes
    world = init_world(ranks_per_node=1 if simulated else None)
    with abort_on_error(world):
        info = open_dataset_once(world, data)
        spec = WindowSpec(time_of_day=True)
        train = make_splits(info.num_steps)["train"]
        shuffle = "local" if method == "node-shared-partitioned" else "global"
        starts = partition.rank_window_starts(train, world.rank, world.size, batch_size, shuffle=shuffle)
        t0 = 0
        if method == "materialized":
            from pgti.bench.baselines import MaterializedBatches, materialize_windows

            signals = read_signals(info)
            x, y = materialize_windows(signals, info.timestamps, make_splits(info.num_steps)["train"], spec)
            del signals
            batches = MaterializedBatches(x, y, train, batch_size)
            batches = ((bx, by) for bx, by, _ in batches)
        else:
            if method == "per-rank-copy":
                signals = read_signals(info)  # every rank its own full copy
            elif method == "node-shared":
                signals = load_signals(world, info).tensor()
            else:
                lo, hi = partition.block_bounds(len(train), world.size, world.rank)
                t0, t1 = node_time_span(world, train[lo:hi], spec.input_steps, spec.output_steps)
                signals = load_signals(world, info, t0, t1).tensor()
            batcher = IndexBatcher(signals, info.timestamps[t0:t0 + len(signals)], starts - t0, batch_size, spec)
            batches = ((bx, by) for bx, by, _ in batcher)
        checksum = 0.0
        for k, (bx, by) in enumerate(batches):
            checksum += float(bx.sum() + by.sum())
            if k + 1 >= WORKER_BATCHES:
                break
        world.comm.Barrier()
        time.sleep(0.3)  # hold the steady state for the sampler
        hwm = _vm_hwm(os.getpid())
        rows = world.comm.gather({"rank": world.rank, "host": socket.gethostname(), "peak_rss_bytes": hwm,
                                  "peak_pss_bytes": own.stop() if own else None, "checksum": checksum}, root=0)
        if world.rank == 0:
            print("PGTI_MEMORY " + json.dumps(rows), flush=True)
        world.comm.Barrier()


# --------------------------------------------------------------------------- sampling


def _vm_hwm(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _pss(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _is_worker(pid: int) -> bool:
    try:
        return b"pgti.bench.memory" in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False


def run_configuration(method: str, ranks: int, data: str, batch_size: int, hosts: int = 1) -> dict:
    from pgti.errors import UserError

    cmd = mpirun(ranks, hosts) + [sys.executable, "-m", "pgti.bench.memory", "--worker", method, "--data", data,
                                  "--batch-size", str(batch_size)] + (["--real-nodes"] if hosts > 1 else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = {"pss": 0, "per_process": {}}
    done = threading.Event()

    def sample():
        while not done.is_set():
            sizes = {p: _pss(p) for p in _descendants(proc.pid) if _is_worker(p)}
            peak["pss"] = max(peak["pss"], sum(sizes.values()))
            for p, size in sizes.items():
                peak["per_process"][p] = max(peak["per_process"].get(p, 0), size)
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{method} x{ranks} failed (status {proc.returncode}):\n{err[-2000:]}")
    rows = json.loads(next(line for line in out.splitlines() if line.startswith("PGTI_MEMORY "))[12:])
    per_host: dict[str, int] = {}
    if hosts > 1:
        for r in rows:
            per_host[r["host"]] = per_host.get(r["host"], 0) + r["peak_pss_bytes"]
        if len(per_host) != hosts:
            raise UserError(f"{method} x{ranks}: --hosts {hosts}, but the ranks ran on {len(per_host)} host(s) "
                            f"({', '.join(sorted(per_host))}): give mpirun the hosts (an allocation, or --hostfile "
                            f"in $PGTI_MPIRUN_ARGS)")
        node, everything = max(per_host.values()), sum(per_host.values())
    elif method == "node-shared-partitioned":
        # Each rank is its own (simulated) node here: a node's memory is one rank's PSS.
        node, everything = max(peak["per_process"].values(), default=0), peak["pss"]
    else:
        node, everything = peak["pss"], peak["pss"]
    return {"method": method, "ranks": ranks, "hosts": hosts, "node_pss_bytes": node, "all_ranks_pss_bytes": everything,
            "pss_per_host_bytes": per_host or None,
            "peak_rss_per_rank_bytes": [r["peak_rss_bytes"] for r in rows], "measured": True}


def estimate(method: str, ranks: int, info) -> int:
    """Node bytes a method needs (data only, plus a runtime allowance per rank)."""
    raw = info.signal_bytes
    cal = info.num_steps * info.num_nodes * 4  # time-of-day channel of the prepared series
    windows = info.window_bytes(12, 12) + (info.num_steps - 23) * 12 * info.num_nodes * 4  # x gains a channel
    per = {"materialized": ranks * (windows + raw + cal), "per-rank-copy": ranks * raw,
           "node-shared": raw, "node-shared-partitioned": raw * 1.02}[method]
    return int(per + ranks * RUNTIME_BYTES)


class PemsShape:
    """The full PeMS dataset's sizes, for `pgti.bench.memory.estimate` (no file needed)."""

    num_nodes, num_steps, num_channels = 11_160, 105_120, 1

    @property
    def signal_bytes(self) -> int:
        return self.num_steps * self.num_nodes * self.num_channels * 4

    def window_bytes(self, input_steps: int = 12, output_steps: int = 12) -> int:
        windows = self.num_steps - input_steps - output_steps + 1
        return windows * (input_steps + output_steps) * self.num_nodes * self.num_channels * 4


def available_bytes() -> int:
    for line in open("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def benchmark(data: str, ranks: list[int], methods=METHODS, batch_size: int = 64, hosts: int = 1) -> list[dict]:
    from pgti.data.format import open_dataset

    info = open_dataset(data)
    results = []
    for w in ranks:
        for method in methods:
            need = estimate(method, w // hosts, info)  # one host's share: W/H ranks and their data
            row = {"method": method, "ranks": w, "estimate_bytes": need}
            if need > 0.8 * available_bytes():
                row.update(measured=False, reason=f"needs ~{need / 2**30:.1f} GiB, "
                                                  f"{available_bytes() / 2**30:.1f} GiB available")
            else:
                row.update(run_configuration(method, w, data, batch_size, hosts))
            results.append(row)
            print(_row_text(row, info.signal_bytes), flush=True)
    return results


def _row_text(row: dict, raw: int) -> str:
    label = f"{LABELS[row['method']]:32s} W={row['ranks']}"
    if not row.get("measured"):
        return f"{label}  impossible here: {row['reason']}"
    hosts = row.get("pss_per_host_bytes")
    where = f" ({', '.join(f'{h} {gib_column(b).strip()}' for h, b in sorted(hosts.items()))})" if hosts else ""
    return (f"{label}  node PSS {gib_column(row['node_pss_bytes'])} ({row['node_pss_bytes'] / raw:5.2f}x raw)  "
            f"peak RSS/rank max {gib_column(max(row['peak_rss_per_rank_bytes']))}{where}")


# --------------------------------------------------------------------------- CLI


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="a pgti dataset")
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--hosts", type=int, default=1,
                   help="spread each run over this many hosts, W/H ranks each (--map-by ppr:W/H:node; the hosts "
                        "come from the allocation or a --hostfile in $PGTI_MPIRUN_ARGS); reports PSS per host")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--chart", help="write a PNG chart")
    add_force_argument(p)


def run(args) -> int:
    from pgti.data.format import open_dataset
    from pgti.errors import UserError

    info = open_dataset(args.data)
    for option, path in (("--json", args.json), ("--chart", args.chart)):
        if path:
            check_output(path, option=option, force=args.force, reads=[args.data])
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise UserError(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}")
    ranks = counts("--ranks", args.ranks)
    check_batch(info, args.batch_size)  # (every rank of a benchmark process loads its own batch)
    print(f"node memory on {info.name}: raw array {gib_column(info.signal_bytes)}, "
          f"classic windows {gib_column(info.window_bytes())} per copy")
    from pgti.bench.memory_report import chart, table

    if args.hosts < 1:
        raise UserError(f"--hosts {args.hosts}: give 1 or more hosts")
    bad = [w for w in ranks if w < args.hosts or w % args.hosts]
    if bad:
        raise UserError(f"--hosts {args.hosts}: every --ranks count must be a multiple of it ({bad} are not)")
    results = benchmark(args.data, ranks, methods, args.batch_size, args.hosts)
    print(table(results, info.signal_bytes))
    payload = {"dataset": str(args.data), "raw_bytes": info.signal_bytes, "hosts": args.hosts, "results": results}
    if args.json:
        write_text_output(args.json, json.dumps(payload, indent=2) + "\n", option="--json")
    if args.chart:
        chart(results, Path(args.chart), f"node memory, {info.name} ({info.num_nodes} sensors x {info.num_steps} steps)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", choices=METHODS, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--real-nodes", action="store_true", help="never simulate nodes (runs across hosts)")
    ns = parser.parse_args()
    _worker(ns.worker, ns.data, ns.batch_size, ns.real_nodes)
