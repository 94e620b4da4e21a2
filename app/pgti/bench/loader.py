"""`pgti bench loader`: index-batching vs per-sample vs materialized batch loading, and memcpy.

    pgti bench loader --data FILE --batch-size 64 [--device cpu|cuda] [--batches N] [--json FILE]

Every method runs in its own fresh process (`python -m pgti.bench.loader --one METHOD ...`),
so its peak resident memory is its own. Each child reports, as one JSON line:
- setup_s: from opening the file to the first batch in hand (read, split, scaler fit, build);
- peak_rss_bytes: the process' VmHWM (ru_maxrss where /proc is missing), and base_rss_bytes,
  its RSS after importing torch and pgti (the part every method pays, ~0.2 GiB);
- batches_per_s and gb_per_s over `--batches` further batches (median of 5 rounds; with
  `--repeat R` every method runs R times, interleaved, and its fastest run is kept: other
  processes on the machine only ever slow a run down); bytes = the x and y float32 tensors a
  batch delivers. Torch runs `--threads` intra-op threads (default 1, one rank's loader).
The methods load identical batches (same split, scaler, features, shuffle order):
- materialized: every window of train/val/test copied out first (DCRNN, PyG-Temporal);
- per_sample: PGT-I's dataset, one `__getitem__` per sample and the default collate;
- index: `IndexBatcher`, one vectorized gather per batch from the one raw array;
- memcpy: the physical reference, copying the same bytes per batch from random places of a
  source larger than the CPU caches (at least 1 GiB and 4x the last-level cache), or of GPU
  memory with --device cuda.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pgti.errors import UserError

METHODS = ("materialized", "per_sample", "index", "memcpy")
ROUNDS = 5


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="pgti dataset file (HDF5)")
    p.add_argument("--batch-size", type=int, default=64, help="windows per batch (default 64)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where batches are delivered")
    p.add_argument("--batches", type=int, default=500, help="batches timed after the first (default 500)")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--input-steps", type=int, default=12, help="Tin (default 12)")
    p.add_argument("--output-steps", type=int, default=12, help="Tout (default 12)")
    p.add_argument("--storage-dtype", choices=["float32", "float16", "bfloat16"], default="float32",
                   help="raw array dtype of the index method (default float32)")
    p.add_argument("--no-time-of-day", action="store_true", help="no time-of-day input channel (DCRNN adds one)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads per method (default 1: one rank's loader; more threads "
                        "collapse when other processes keep the cores busy)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run every method this many times, interleaved, and keep each one's fastest run")
    p.add_argument("--one", choices=METHODS, help=argparse.SUPPRESS)  # child mode: one method, JSON out


def run(args) -> int:
    if args.one:
        print(json.dumps(measure_one(args.one, args)))
        return 0
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise UserError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not Path(args.data).exists():
        raise UserError(f"{args.data}: no such file; make one with `pgti data synth --preset pems-bay --out FILE`")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device here; use --device cpu")
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {method: [] for method in methods}
    for _ in range(max(1, args.repeat)):  # interleaved, so a busy spell hits every method alike
        for method in methods:
            runs[method].append(_spawn(method, args))
    results = [_best(runs[method]) for method in methods]
    machine = {"cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg()[0]}
    print(format_table(results))
    print(f"machine: {machine['cpus']} CPUs, 1-minute load average {load_before:.1f} before, "
          f"{machine['load_average_after']:.1f} after (other work on the machine slows every method)")
    if args.json:
        report = {"config": _config(args), "machine": machine, "results": results}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _config(args) -> dict:
    return {k: getattr(args, k) for k in ("data", "batch_size", "device", "batches", "input_steps", "output_steps",
                                           "storage_dtype", "no_time_of_day", "seed", "threads", "repeat")}


def _best(runs: list[dict]) -> dict:
    """The fastest of a method's runs (other processes only ever slow a run down), with every
    run's batches/s kept under `runs_batches_per_s`."""
    best = dict(max(runs, key=lambda r: r["batches_per_s"]))
    best["runs_batches_per_s"] = [r["batches_per_s"] for r in runs]
    best["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)
    return best


def _spawn(method: str, args) -> dict:
    """Run one method in a fresh interpreter; return its JSON result."""
    cmd = [sys.executable, "-m", "pgti.bench.loader", "--one", method, "--data", str(args.data),
           "--batch-size", str(args.batch_size), "--device", args.device, "--batches", str(args.batches),
           "--input-steps", str(args.input_steps), "--output-steps", str(args.output_steps),
           "--storage-dtype", args.storage_dtype, "--seed", str(args.seed)]
    if args.no_time_of_day:
        cmd.append("--no-time-of-day")
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise UserError(f"bench loader: method {method} failed (exit {done.returncode}): {tail[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- one method (child process)


def measure_one(method: str, args) -> dict:
    import torch

    from pgti.data import baselines, scaler, windows  # noqa: F401  (imported before the baseline RSS)
    from pgti.data.format import open_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    base_rss = _rss_bytes("VmRSS")
    device = torch.device(args.device)
    began = time.perf_counter()
    info = open_dataset(args.data)
    if method == "memcpy":
        batch_bytes, next_batch = _memcpy_source(info, args, device)
    else:
        batch_bytes, next_batch = _loader(method, info, args, device)
    next_batch()
    _sync(device)
    setup_s = time.perf_counter() - began
    per_round = max(1, args.batches // ROUNDS)
    round_rates = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        for _ in range(per_round):
            next_batch()
        _sync(device)
        round_rates.append(per_round / (time.perf_counter() - t0))
    rate = statistics.median(round_rates)
    result = {
        "method": method, "device": str(device), "batch_size": args.batch_size, "batches": per_round * ROUNDS,
        "setup_s": setup_s, "batches_per_s": rate, "gb_per_s": rate * batch_bytes / 1e9, "batch_bytes": batch_bytes,
        "peak_rss_bytes": _peak_rss_bytes(), "base_rss_bytes": base_rss, "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        result["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    return result


def _loader(method: str, info, args, device):
    """Build `method`'s loader on the dataset; returns (bytes per batch, next_batch())."""
    from pgti.data import baselines
    from pgti.data.scaler import Scaler
    from pgti.data.windows import SPLITS, IndexBatcher, WindowSpec, load_signals, make_splits

    spec = WindowSpec(args.input_steps, args.output_steps, time_of_day=not args.no_time_of_day)
    splits = make_splits(info.num_steps, args.input_steps, args.output_steps)
    storage = args.storage_dtype if method == "index" else "float32"
    signals = load_signals(info, storage)
    scaler = Scaler.fit(signals, splits["train"], input_steps=args.input_steps, output_steps=args.output_steps,
                        missing_value=info.missing_value)
    train = splits["train"]
    if method == "index":
        loader = IndexBatcher(signals, info.timestamps, train, args.batch_size, spec, scaler, shuffle=True,
                              seed=args.seed, drop_last=True, device=device)
        epochs = _epochs(lambda epoch: (loader.set_epoch(epoch), loader)[1])
    elif method == "materialized":  # DCRNN keeps all three splits' windows in memory
        windows = {name: baselines.materialize_windows(signals, info.timestamps, splits[name], spec, scaler)
                   for name in SPLITS}
        del signals
        loader = baselines.MaterializedBatches(*windows["train"], train, args.batch_size, shuffle=True,
                                               seed=args.seed, drop_last=True, device=device)
        epochs = _epochs(lambda epoch: (loader.set_epoch(epoch), loader)[1])
    else:
        inputs, targets = baselines.prepare_series(signals, info.timestamps, spec, scaler, device=device)
        del signals
        dataset = baselines.PerSampleWindows(inputs, targets, train, spec)
        epochs = _epochs(lambda epoch: baselines.per_sample_loader(dataset, args.batch_size, shuffle=True,
                                                                    seed=args.seed, epoch=epoch, drop_last=True))
    x_channels = spec.x_channels(info.num_channels)
    per_sample = (args.input_steps * x_channels + args.output_steps * info.num_channels) * info.num_nodes * 4
    return args.batch_size * per_sample, lambda: next(epochs)


def _epochs(make_epoch):
    """Endless batches, epoch after epoch."""
    epoch = 0
    while True:
        yield from make_epoch(epoch)
        epoch += 1


def _memcpy_source(info, args, device):
    """Copy the bytes of one batch from B random sample-sized places of a large source."""
    import torch

    x_channels = info.num_channels + (0 if args.no_time_of_day else 1)
    sample_values = (args.input_steps * x_channels + args.output_steps * info.num_channels) * info.num_nodes
    source_bytes = max(1 << 30, 4 * _last_level_cache_bytes())
    rows = source_bytes // (4 * sample_values)
    source = torch.ones((rows, sample_values), dtype=torch.float32, device=device)  # touched: real pages
    out = torch.empty((args.batch_size, sample_values), dtype=torch.float32, device=device)
    generator = torch.Generator().manual_seed(args.seed)

    def next_batch():
        picks = torch.randint(rows, (args.batch_size,), generator=generator).to(device)
        return torch.index_select(source, 0, picks, out=out)

    return args.batch_size * sample_values * 4, next_batch


def _last_level_cache_bytes() -> int:
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes, default=64 << 20)


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _rss_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss_bytes() -> int:
    return _rss_bytes("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------- report


def format_table(results: list[dict]) -> str:
    """Plain-text table with ratios against `index`, then the acceptance checks."""
    by_method = {r["method"]: r for r in results}
    index = by_method.get("index")
    mib = 1 << 20
    header = (f"{'method':<13}{'setup s':>9}{'peak RSS MiB':>14}{'data MiB':>10}{'RSS/index':>11}"
              f"{'batches/s':>11}{'vs index':>10}{'GB/s':>8}{'vs index':>10}")
    lines = [header, "-" * len(header)]
    for r in results:
        data_mib = (r["peak_rss_bytes"] - (r["base_rss_bytes"] or 0)) / mib
        rss_ratio = _ratio(r["peak_rss_bytes"], index and index["peak_rss_bytes"])
        speed_ratio = _ratio(r["batches_per_s"], index and index["batches_per_s"])
        gb_ratio = _ratio(r["gb_per_s"], index and index["gb_per_s"])
        lines.append(f"{r['method']:<13}{r['setup_s']:>9.2f}{r['peak_rss_bytes'] / mib:>14.0f}{data_mib:>10.0f}"
                     f"{rss_ratio:>11}{r['batches_per_s']:>11.0f}{speed_ratio:>10}{r['gb_per_s']:>8.2f}{gb_ratio:>10}")
    lines.append("data MiB = peak RSS - RSS after importing torch and pgti; ratios are method / index")
    lines.extend(_checks(by_method))
    return "\n".join(lines)


def _ratio(value, reference) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def _checks(by_method: dict) -> list[str]:
    index = by_method.get("index")
    if not index:
        return []
    checks = []
    if "materialized" in by_method:
        share = index["peak_rss_bytes"] / by_method["materialized"]["peak_rss_bytes"]
        checks.append(("index peak RSS <= 10% of materialized", share <= 0.10, f"{share:.1%}"))
    if "per_sample" in by_method:
        speedup = index["batches_per_s"] / by_method["per_sample"]["batches_per_s"]
        checks.append(("index batches/s >= 3x per_sample", speedup >= 3, f"{speedup:.1f}x"))
    if "memcpy" in by_method:
        gap = by_method["memcpy"]["gb_per_s"] / index["gb_per_s"]
        checks.append(("index GB/s within 4x of memcpy", gap <= 4, f"memcpy/index = {gap:.2f}"))
    return [f"{'PASS' if ok else 'MISS'}  {name}: {value}" for name, ok, value in checks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgti.bench.loader", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
