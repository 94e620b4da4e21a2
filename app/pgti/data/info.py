"""`pgti data info FILE`: validate a dataset and print what a user needs to know about it."""
from __future__ import annotations

import datetime as _dt

import numpy as np

from pgti.data.format import DatasetInfo, iter_signal_blocks, open_dataset


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _when(ts: int) -> str:
    return _dt.datetime.fromtimestamp(int(ts), tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def missing_fractions(info: DatasetInfo, progress: bool = False) -> np.ndarray:
    """Fraction of readings equal to `missing_value`, per channel (streams the file; also
    validates every value is finite)."""
    from tqdm import tqdm

    counts = np.zeros(info.num_channels, dtype=np.int64)
    with tqdm(total=info.num_steps, unit="step", unit_scale=True, disable=not progress,
              desc="scanning", leave=False) as bar:
        for _, block in iter_signal_blocks(info):
            counts += (block == info.missing_value).sum(axis=(0, 1))
            bar.update(block.shape[0])
    return counts / max(1, info.num_steps * info.num_nodes)


def describe(info: DatasetInfo, scan: bool = True, progress: bool = False) -> str:
    T, N, C = info.shape
    out_deg = np.bincount(info.edge_index[0], minlength=N)
    in_deg = np.bincount(info.edge_index[1], minlength=N)
    self_loops = int((info.edge_index[0] == info.edge_index[1]).sum())
    lines = [
        f"dataset      {info.name}  ({info.path})",
        f"shape        T={T:,} steps x N={N:,} sensors x C={C} channels [{', '.join(info.channels)}]",
        f"time         {_when(info.timestamps[0])} .. {_when(info.timestamps[-1])}, every {info.interval_seconds} s"
        if T else "time         (empty)",
        f"graph        E={info.num_edges:,} directed edges ({self_loops} self-loops); "
        f"out-degree min/mean/max {out_deg.min()}/{out_deg.mean():.1f}/{out_deg.max()}, "
        f"in-degree {in_deg.min()}/{in_deg.mean():.1f}/{in_deg.max()}; "
        f"weights {info.edge_weight.min():.3f}..{info.edge_weight.max():.3f}" if info.num_edges else "graph        no edges",
        f"memory       raw float32 array {human_bytes(info.signal_bytes)}; "
        f"materialized 12-in/12-out windows {human_bytes(info.window_bytes(12, 12))} "
        f"({info.window_bytes(12, 12) / max(1, info.signal_bytes):.1f}x)",
    ]
    if scan:
        frac = missing_fractions(info, progress=progress)
        per = ", ".join(f"{name} {100 * f:.2f}%" for name, f in zip(info.channels, frac))
        lines.append(f"missing      (== {info.missing_value:g}) {per}")
    ranges = ", ".join(f"{info.channels[c]} [{lo:g}, {hi:g}]" for c, (lo, hi) in info.value_ranges.items())
    lines.append("checks       " + ("fletcher32 checksums on /signals" if info.checksummed else
                                    "no checksums (an older file: `pgti data verify` cannot detect corruption)")
                 + (f"; plausible ranges {ranges}" + (" (checked)" if scan else "") if ranges else ""))
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("file", help="a pgti dataset (.h5)")
    p.add_argument("--no-scan", action="store_true", help="skip the full pass over the signals (missing fractions)")


def run(args) -> int:
    import sys

    info = open_dataset(args.file)
    print(describe(info, scan=not args.no_scan, progress=sys.stderr.isatty()))
    return 0
