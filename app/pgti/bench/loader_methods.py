"""One loader method measured in its own process (`python -m pgti.bench.loader --one METHOD`).

`measure_one` builds the method's loader (pgti.bench.loader's docstring describes each), times
batches after the first and reports setup time, peak RSS, batches/s, GB/s and page faults.
"""
from __future__ import annotations

import ctypes
import resource
import statistics
import sys
import time
from pathlib import Path

ROUNDS = 5

# Heavy modules no loader method needs: a child reports which of them it has imported anyway.
WATCHED_IMPORTS = ("pandas", "matplotlib", "torch_geometric", "scipy", "sympy", "mpi4py", "pgti.bench.baselines")


def measure_one(method: str, args) -> dict:
    import torch

    from pgti.data.format import open_dataset

    if method != "memcpy":  # what the method needs, imported before the base RSS; pgti needs no baselines
        from pgti.data import batcher, scaler, windows  # noqa: F401
        if not method.startswith("pgti"):
            from pgti.bench import baselines  # noqa: F401
    if args.threads:
        torch.set_num_threads(args.threads)
    base_rss = _rss_bytes("VmRSS")
    device = torch.device(args.device)
    from pgti.bench.machine import sync

    began = time.perf_counter()
    info = open_dataset(args.data)
    if method == "memcpy":
        batch_bytes, next_batch = _memcpy_source(info, args, device)
        delivered_bytes = batch_bytes
    else:
        batch_bytes, delivered_bytes, next_batch = _loader(method, info, args, device)
    next_batch()
    sync(device)
    setup_s = time.perf_counter() - began
    _keep_freed_pages()
    per_round = max(1, args.batches // ROUNDS)
    round_rates, cpu_rates = [], []
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(ROUNDS):
        t0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(per_round):
            next_batch()
        sync(device)
        round_rates.append(per_round / (time.perf_counter() - t0))
        cpu_rates.append(per_round / max(time.process_time() - cpu0, 1e-9))
    rate = statistics.median(round_rates)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before  # fresh pages touched
    result = {
        "method": method, "device": str(device), "batch_size": args.batch_size, "batches": per_round * ROUNDS,
        "setup_s": setup_s, "batches_per_s": rate, "gb_per_s": rate * batch_bytes / 1e9, "batch_bytes": batch_bytes,
        "batches_per_cpu_s": statistics.median(cpu_rates), "delivered_bytes": delivered_bytes,
        "page_faults_per_batch": faults / (per_round * ROUNDS),
        "peak_rss_bytes": _peak_rss_bytes(), "base_rss_bytes": base_rss, "threads": torch.get_num_threads(),
        "watched_imports": [name for name in WATCHED_IMPORTS if name in sys.modules],
    }
    if device.type == "cuda":
        result["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(device)
    return result


def _loader(method: str, info, args, device):
    """Build `method`'s loader on the dataset; returns (useful bytes per batch, bytes a batch
    really holds, next_batch())."""
    from pgti.data.batcher import IndexBatcher
    from pgti.data.scaler import Scaler
    from pgti.data.splits import SPLITS, make_splits
    from pgti.data.windows import WindowSpec, read_series

    spec = WindowSpec(args.input_steps, args.output_steps, time_of_day=not args.no_time_of_day)
    splits = make_splits(info.num_steps, args.input_steps, args.output_steps)
    storage = {"pgti": args.storage_dtype, "pgti_fp16": "float16"}.get(method, "float32")
    signals = read_series(info, storage)
    scaler = Scaler.fit(signals, splits["train"], input_steps=args.input_steps, output_steps=args.output_steps,
                        missing_value=info.missing_value)
    train = splits["train"]
    x_channels = spec.x_channels(info.num_channels)
    useful = args.batch_size * (args.input_steps * x_channels + args.output_steps * info.num_channels) \
        * info.num_nodes * 4
    delivered = useful
    if method.startswith("pgti"):
        loader = IndexBatcher(signals, info.timestamps, train, args.batch_size, spec, scaler, shuffle=True,
                              seed=args.seed, drop_last=True, device=device, reuse_buffers=True)
        epochs = _epochs(lambda epoch: (loader.set_epoch(epoch), loader)[1])
        return useful, delivered, lambda: next(epochs)
    from pgti.bench import baselines

    if method == "materialized":  # DCRNN keeps all three splits' windows in memory
        windows = {name: baselines.materialize_windows(signals, info.timestamps, splits[name], spec, scaler)
                   for name in SPLITS}
        del signals
        loader = baselines.MaterializedBatches(*windows["train"], train, args.batch_size, shuffle=True,
                                               seed=args.seed, drop_last=True, device=device)
        epochs = _epochs(lambda epoch: (loader.set_epoch(epoch), loader)[1])
        return useful, delivered, lambda: next(epochs)
    if method == "pgt_i":  # one array, x and y both every feature; float64 on the CPU
        data = baselines.prepare_series_pgt(signals, info.timestamps, spec, scaler, device=device)
        inputs = targets = data
        delivered = args.batch_size * spec.window_steps * info.num_nodes * data.shape[-1] * data.itemsize
    else:
        inputs, targets = baselines.prepare_series(signals, info.timestamps, spec, scaler, device=device)
    del signals
    dataset = baselines.PerSampleWindows(inputs, targets, train, spec)
    epochs = _epochs(lambda epoch: baselines.per_sample_loader(dataset, args.batch_size, shuffle=True,
                                                                seed=args.seed, epoch=epoch, drop_last=True))
    return useful, delivered, lambda: next(epochs)


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


def _keep_freed_pages() -> None:
    """From here on, glibc keeps freed memory for reuse (no trimming, no mmap below 32 MiB), for
    every method alike. Kind to the baselines: a loader that allocates each batch afresh (PGT-I's
    collate: 2 x 3.8 MB float64 on pems-bay) otherwise page-faults those pages anew in some runs
    and not in others, depending on the heap's layout (measured: ~1,000-1,900 faults and 2.5-4x
    slower per batch); index-batching allocates nothing per batch. Setup (and so peak RSS) runs
    under the default allocator."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: its maximum
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def _last_level_cache_bytes() -> int:
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = path.read_text().strip()
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * scale)
    return max(sizes, default=64 << 20)




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

