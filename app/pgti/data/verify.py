"""Data integrity: checksums, plausible value ranges, and `pgti data verify FILE`.

- Checksums: pgti writes `/signals` with HDF5's fletcher32 filter, so a corrupted chunk fails
  to read. `read_signals` turns that failure into one error that names the file and the time
  range of the bad chunk (`locate_bad_chunk`). Files written before have no checksums: they
  still load, with a note (`checksum_note`).
- Ranges: a value outside its channel's plausible range is an error that names the step,
  sensor and value (`check_ranges`). A speed channel gets [0, 200] (mph) by default; any channel
  can declare its own with the attrs `valid_min` and `valid_max` (one number per channel, NaN =
  unbounded). The missing value is always allowed.
- `pgti data verify FILE`: read every chunk once (checksums, finiteness, ranges) and report.
"""
from __future__ import annotations

import datetime as _dt
import math

import h5py
import numpy as np

from pgti.errors import file_error

DEFAULT_RANGES = {"speed": (0.0, 200.0)}  # mph: PeMS and METR-LA (free flow ~65-70)
_RESTORE = "restore the file from its source or a backup, or re-create it (`pgti data import` / `pgti data synth`)"


def value_ranges(channels: list[str], attrs: dict) -> dict[int, tuple[float, float]]:
    """{channel index: (lo, hi)} for the channels that have a plausible range."""
    ranges = {}
    lows, highs = attrs.get("valid_min"), attrs.get("valid_max")
    for c, name in enumerate(channels):
        lo, hi = DEFAULT_RANGES.get(name.lower(), (-math.inf, math.inf))
        if lows is not None and c < np.size(lows) and not np.isnan(np.ravel(lows)[c]):
            lo = float(np.ravel(lows)[c])
        if highs is not None and c < np.size(highs) and not np.isnan(np.ravel(highs)[c]):
            hi = float(np.ravel(highs)[c])
        if math.isfinite(lo) or math.isfinite(hi):
            ranges[c] = (lo, hi)
    return ranges


def check_ranges(info, block: np.ndarray, t0: int, fix: str = "set the file's attrs valid_min/valid_max") -> None:
    """One error (file, step, sensor, channel, value, range) for the first reading of `block`
    (steps t0...) outside its channel's range; the missing value is never out of range. `fix`:
    how to declare another range (a file's attrs; an import's option)."""
    for c, (lo, hi) in info.value_ranges.items():
        column = block[..., c]
        if column.size == 0 or (column.min() >= lo and column.max() <= hi):
            continue
        bad = ((column < lo) | (column > hi)) & (column != info.missing_value)
        if not bad.any():
            continue
        step, sensor = (int(i) for i in np.argwhere(bad)[0])
        value = float(column[step, sensor])
        raise file_error(info.path, "/signals",
                         f"{info.channels[c]} reading {value:.6g} at step {t0 + step} ({_when(info, t0 + step)}), "
                         f"sensor {info.node_ids[sensor]} is outside its plausible range [{lo:g}, {hi:g}]",
                         "fix or drop the source's bad readings (or store them as the missing value "
                         f"{info.missing_value:g}); if the range is wrong for these data, {fix}")


def _when(info, step: int) -> str:
    return _dt.datetime.fromtimestamp(int(info.timestamps[step]), tz=_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def locate_bad_chunk(info, t0: int, t1: int):
    """The error to raise for a failed read of steps [t0, t1): one naming the first chunk that
    does not read (a checksum mismatch), or None when every chunk reads on its own."""
    step = info.chunk_steps or (t1 - t0)
    try:
        f = h5py.File(info.path, "r")
    except OSError:
        return None  # (the caller's own message)
    with f:
        signals = f["signals"]
        first = (t0 // step) * step
        for c0 in range(first, t1, step):
            c1 = min(c0 + step, info.num_steps)
            try:
                signals[c0:c1]
            except OSError as exc:
                kind = "checksum mismatch (fletcher32)" if info.checksummed else f"unreadable chunk ({exc})"
                return file_error(info.path, "/signals",
                                  f"{kind} in steps [{c0}, {c1}) ({_when(info, c0)} .. {_when(info, c1 - 1)}): "
                                  "the file is corrupt", _RESTORE)
    return None


def checksum_note(info) -> str:
    if info.checksummed:
        return ""
    return (f"{info.path}: /signals has no checksums (written by an older pgti or another tool): a corrupted chunk "
            "cannot be detected; re-create the file with `pgti data import` to add them")


def verify(info, progress: bool = False) -> dict:
    """Read every chunk once (checksums, finite values, ranges); raises the first problem as
    one UserError; returns what was checked."""
    from tqdm import tqdm

    from pgti.data.format import iter_signal_blocks

    counts = np.zeros(info.num_channels, dtype=np.int64)
    lo = np.full(info.num_channels, np.inf)
    hi = np.full(info.num_channels, -np.inf)
    with tqdm(total=info.num_steps, unit="step", unit_scale=True, disable=not progress, desc="verifying",
              leave=False) as bar:
        for _, block in iter_signal_blocks(info):  # read_signals: checksums, finiteness and ranges
            present = block != info.missing_value
            counts += present.sum(axis=(0, 1))
            lo = np.minimum(lo, np.where(present, block, np.inf).min(axis=(0, 1)))
            hi = np.maximum(hi, np.where(present, block, -np.inf).max(axis=(0, 1)))
            bar.update(block.shape[0])
    return {"checksummed": info.checksummed, "readings": int(counts.sum()),
            "channels": {name: {"min": float(lo[c]) if counts[c] else None, "max": float(hi[c]) if counts[c] else None,
                                "range": list(info.value_ranges.get(c, (None, None)))}
                         for c, name in enumerate(info.channels)}}


def add_arguments(p) -> None:
    p.add_argument("file", help="a pgti dataset (.h5)")


def run(args) -> int:
    import sys

    from pgti.data.format import open_dataset

    info = open_dataset(args.file)
    report = verify(info, progress=sys.stderr.isatty())
    T, N, C = info.shape
    print(f"{info.path}: ok: {T:,} steps x {N:,} sensors x {C} channels read once, every value finite"
          + (", every chunk's fletcher32 checksum matches" if info.checksummed else ""))
    for name, r in report["channels"].items():
        bound = f" within [{r['range'][0]:g}, {r['range'][1]:g}]" if r["range"][0] is not None else " (no range declared)"
        seen = f"{r['min']:.6g} .. {r['max']:.6g}" if r["min"] is not None else "no readings"
        print(f"  {name}: {seen}{bound}")
    note = checksum_note(info)
    if note:
        print(f"note: {note}")
    return 0
