"""The pgti HDF5 dataset format (version 1): writer, validating reader, slice reads.

Layout (see DESIGN.md):
  /signals            float32 [T, N, C], chunked along time
  /timestamps         int64   [T]  unix seconds, strictly increasing
  /graph/edge_index   int64   [2, E]  (source, target) node indices in [0, N)
  /graph/edge_weight  float32 [E]
  /nodes/id           str     [N]
  /nodes/lat, /nodes/lon  float64 [N]  (optional)
  attrs: format="pgti-dataset", version=1, name, interval_seconds, channels (names),
         missing_value (0.0 for PeMS: a reading equal to it is missing)

The writer streams blocks along time (memory bounded by one block) into a temporary file that
is renamed into place on close, so a crash never leaves a half-written dataset under the final
name. The reader validates metadata on open and every value it reads (non-finite values are an
error naming the time range), and can read a time slice straight into a caller's buffer
(`read_direct`), which is how the distributed loader fills MPI shared memory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pgti.data.verify import check_ranges, locate_bad_chunk, value_ranges
from pgti.errors import file_error
from pgti.outputs import AtomicOutput

FORMAT_NAME = "pgti-dataset"
FORMAT_VERSION = 1
DEFAULT_CHUNK_STEPS = 288  # one day of 5-minute readings
_REMAKE = "re-create it with `pgti data synth` or `pgti data import`"


@dataclass
class DatasetInfo:
    """Everything about a dataset except its signals (which stay on disk until read)."""

    path: Path
    name: str
    num_steps: int  # T
    num_nodes: int  # N
    channels: list[str]  # C names
    interval_seconds: int
    missing_value: float
    timestamps: np.ndarray  # int64 [T] unix seconds
    edge_index: np.ndarray  # int64 [2, E]
    edge_weight: np.ndarray  # float32 [E]
    node_ids: list[str]
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    chunk_steps: int | None = None
    attrs: dict = field(default_factory=dict)
    checksummed: bool = False  # /signals has fletcher32 checksums (files pgti writes)
    value_ranges: dict = field(default_factory=dict)  # {channel: (lo, hi)}: pgti.data.verify

    @property
    def num_channels(self) -> int:
        return len(self.channels)

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.num_steps, self.num_nodes, self.num_channels)

    @property
    def signal_bytes(self) -> int:
        """Size of the raw float32 signal array in memory."""
        return self.num_steps * self.num_nodes * self.num_channels * 4

    def window_bytes(self, input_steps: int = 12, output_steps: int = 12) -> int:
        """Size of the classic materialized x and y window arrays (float32)."""
        windows = max(0, self.num_steps - input_steps - output_steps + 1)
        return windows * (input_steps + output_steps) * self.num_nodes * self.num_channels * 4


# --------------------------------------------------------------------------- writing


class DatasetWriter:
    """Stream a dataset to disk block by block along time.

    >>> with DatasetWriter(path, node_ids=ids, channels=["speed"], interval_seconds=300,
    ...                    edge_index=ei, edge_weight=ew) as w:
    ...     for block, ts in blocks:          # block [t, N, C] float32, ts [t] int64
    ...         w.append(block, ts)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        node_ids: list[str],
        channels: list[str],
        interval_seconds: int,
        edge_index: np.ndarray,
        edge_weight: np.ndarray,
        name: str | None = None,
        missing_value: float = 0.0,
        lat: np.ndarray | None = None,
        lon: np.ndarray | None = None,
        chunk_steps: int = DEFAULT_CHUNK_STEPS,
        compression: str | None = None,
        expected_steps: int | None = None,
        attrs: dict | None = None,
    ):
        self.path = Path(path)
        self.num_nodes = len(node_ids)
        self.channels = list(channels)
        self._out = AtomicOutput(self.path)  # pgti.outputs: temp file, fsync, rename; errors are one line
        try:
            self._file = h5py.File(self._out.tmp, "w")
        except OSError as exc:
            raise self._out.error(exc) from None
        f = self._file
        n, c = self.num_nodes, len(self.channels)
        chunk = (max(1, min(chunk_steps, expected_steps or chunk_steps)), n, c)
        self._signals = f.create_dataset(
            "signals", shape=(0, n, c), maxshape=(None, n, c), dtype="float32",
            chunks=chunk, compression=compression, fletcher32=True,  # a corrupted chunk reads as an error
        )
        self._timestamps = f.create_dataset(
            "timestamps", shape=(0,), maxshape=(None,), dtype="int64", chunks=(max(chunk[0], 1024),)
        )
        g = f.create_group("graph")
        g.create_dataset("edge_index", data=np.asarray(edge_index, dtype=np.int64))
        g.create_dataset("edge_weight", data=np.asarray(edge_weight, dtype=np.float32))
        nodes = f.create_group("nodes")
        nodes.create_dataset("id", data=np.array([str(i) for i in node_ids], dtype=object),
                             dtype=h5py.string_dtype())
        if lat is not None:
            nodes.create_dataset("lat", data=np.asarray(lat, dtype=np.float64))
        if lon is not None:
            nodes.create_dataset("lon", data=np.asarray(lon, dtype=np.float64))
        f.attrs["format"] = FORMAT_NAME
        f.attrs["version"] = FORMAT_VERSION
        f.attrs["name"] = name or self.path.stem
        f.attrs["interval_seconds"] = int(interval_seconds)
        f.attrs["channels"] = np.array(self.channels, dtype=object)
        f.attrs["missing_value"] = float(missing_value)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        self._steps = 0

    def append(self, block: np.ndarray, timestamps: np.ndarray) -> None:
        """Append `block [t, N, C]` (any float dtype, stored float32) and `timestamps [t]`."""
        block = np.asarray(block, dtype=np.float32)
        timestamps = np.asarray(timestamps, dtype=np.int64)
        if block.ndim == 2 and len(self.channels) == 1:
            block = block[:, :, None]
        if block.shape[1:] != (self.num_nodes, len(self.channels)) or block.shape[0] != timestamps.shape[0]:
            raise ValueError(f"block {block.shape} / timestamps {timestamps.shape} do not match "
                             f"[t, {self.num_nodes}, {len(self.channels)}]")
        t0, t1 = self._steps, self._steps + block.shape[0]
        self._signals.resize(t1, axis=0)
        self._timestamps.resize(t1, axis=0)
        self._signals[t0:t1] = block
        self._timestamps[t0:t1] = timestamps
        self._steps = t1

    def close(self) -> Path:
        """Finish the file: flush, fsync, rename into place. Returns the final path."""
        self._file.flush()
        self._file.close()
        return self._out.commit()

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            self._out.discard()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_dataset(path, signals: np.ndarray, timestamps: np.ndarray, *, block_steps: int = 4096, **kwargs) -> Path:
    """Write an in-memory `signals [T, N, C]` array (tests, importers)."""
    signals = np.asarray(signals)
    if signals.ndim == 2:
        signals = signals[:, :, None]
    with DatasetWriter(path, expected_steps=signals.shape[0], **kwargs) as w:
        for t0 in range(0, signals.shape[0], block_steps):
            w.append(signals[t0:t0 + block_steps], timestamps[t0:t0 + block_steps])
    return Path(path)


# --------------------------------------------------------------------------- reading


def _as_str_list(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _require(f: h5py.File, path: Path, name: str) -> h5py.Dataset:
    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise file_error(path, f"/{name}", "missing dataset", _REMAKE)
    return f[name]


def _number(value, kind, path: Path, field: str):
    """`kind(value)` for a numeric attribute, or a file_error naming it."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    try:
        if isinstance(value, str) or (kind is int and float(value) != int(value)):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        shown = repr(value) if isinstance(value, str) else str(value)  # not np.float64(inf)
        raise file_error(path, field, f"is {shown}, not a number", _REMAKE) from None


def open_dataset(path: str | os.PathLike) -> DatasetInfo:
    """Open and validate a dataset's metadata and graph; the signals stay on disk.

    Every problem raises a `UserError` naming the file, the field and the fix.
    """
    path = Path(path)
    if not path.exists():
        raise file_error(path, "", "no such file",
                         "check the path, or make one with `pgti data synth --preset tiny --out FILE`")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise file_error(path, "", f"not a readable HDF5 file (truncated or corrupt: {exc.__class__.__name__})",
                         _REMAKE) from None
    with f:
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != FORMAT_NAME:
            raise file_error(path, "attrs/format", f"is {fmt!r}, expected {FORMAT_NAME!r} (not a pgti dataset)",
                             "convert the source with `pgti data import`")
        version = _number(f.attrs.get("version", -1), int, path, "attrs/version")
        if version != FORMAT_VERSION:
            raise file_error(path, "attrs/version", f"is {version}, this pgti reads version {FORMAT_VERSION}",
                             f"re-create the file with this pgti ({_REMAKE})")
        sig = _require(f, path, "signals")
        if sig.ndim != 3 or sig.dtype != np.float32:
            raise file_error(path, "/signals", f"has shape {sig.shape} and dtype {sig.dtype}, expected float32 [T, N, C]",
                             _REMAKE)
        T, N, C = sig.shape
        channels = _as_str_list(f.attrs.get("channels", [f"ch{i}" for i in range(C)]))
        if len(channels) != C:
            raise file_error(path, "attrs/channels", f"names {len(channels)} channels but /signals has {C}", _REMAKE)
        try:
            interval = int(f.attrs["interval_seconds"])
        except (KeyError, TypeError, ValueError):
            raise file_error(path, "attrs/interval_seconds", "missing or not an integer", _REMAKE) from None
        if interval <= 0:
            raise file_error(path, "attrs/interval_seconds", f"is {interval}, must be > 0", _REMAKE)

        ts_ds = _require(f, path, "timestamps")
        if ts_ds.shape != (T,):
            raise file_error(path, "/timestamps", f"has shape {ts_ds.shape}, /signals has T={T} steps",
                             "the file is inconsistent; " + _REMAKE)
        timestamps = ts_ds[()].astype(np.int64)
        if T > 1:
            steps = np.diff(timestamps)
            bad = np.flatnonzero(steps <= 0)
            if bad.size:
                i = int(bad[0])
                kind = "duplicate" if steps[i] == 0 else "unsorted"
                raise file_error(path, "/timestamps",
                                 f"{kind} timestamps at index {i + 1} ({timestamps[i]} then {timestamps[i + 1]}); "
                                 f"{bad.size} such step(s)",
                                 "sort the source by time and drop duplicates before importing")

        ids_ds = _require(f, path, "nodes/id")
        node_ids = _as_str_list(ids_ds[()])
        if len(node_ids) != N:
            raise file_error(path, "/nodes/id", f"has {len(node_ids)} ids, /signals has N={N} sensors",
                             "the signals and the graph describe different sensor sets; " + _REMAKE)
        if len(set(node_ids)) != N:
            raise file_error(path, "/nodes/id", "has duplicate sensor ids", "make sensor ids unique")

        ei = _require(f, path, "graph/edge_index")[()]
        ew = _require(f, path, "graph/edge_weight")[()]
        if ei.ndim != 2 or ei.shape[0] != 2 or not np.issubdtype(ei.dtype, np.integer):
            raise file_error(path, "/graph/edge_index", f"has shape {ei.shape} dtype {ei.dtype}, expected int64 [2, E]",
                             _REMAKE)
        if ew.dtype.kind not in "fiu":
            raise file_error(path, "/graph/edge_weight", f"has dtype {ew.dtype}, expected float32 weights", _REMAKE)
        if ew.shape != (ei.shape[1],):
            raise file_error(path, "/graph/edge_weight", f"has shape {ew.shape}, expected [{ei.shape[1]}] (one per edge)",
                             _REMAKE)
        if ei.size and (ei.min() < 0 or ei.max() >= N):
            raise file_error(path, "/graph/edge_index",
                             f"node index out of range [{int(ei.min())}, {int(ei.max())}] for N={N} sensors",
                             "the graph belongs to another sensor set; " + _REMAKE)
        if not np.all(np.isfinite(ew)):
            raise file_error(path, "/graph/edge_weight", "has non-finite weights", "fix or drop those edges")

        lat = f["nodes/lat"][()] if "nodes/lat" in f else None
        lon = f["nodes/lon"][()] if "nodes/lon" in f else None
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        missing_value = _number(attrs.get("missing_value", 0.0), float, path, "attrs/missing_value")
        return DatasetInfo(
            path=path,
            name=str(attrs.get("name", path.stem)),
            num_steps=T,
            num_nodes=N,
            channels=channels,
            interval_seconds=interval,
            missing_value=missing_value,
            timestamps=timestamps,
            edge_index=ei.astype(np.int64),
            edge_weight=ew.astype(np.float32),
            node_ids=node_ids,
            lat=lat,
            lon=lon,
            chunk_steps=sig.chunks[0] if sig.chunks else None,
            attrs=attrs,
            checksummed=bool(sig.fletcher32),
            value_ranges=value_ranges(channels, attrs),
        )


def read_signals(
    info: DatasetInfo | str | os.PathLike,
    t0: int = 0,
    t1: int | None = None,
    out: np.ndarray | None = None,
    *,
    check_finite: bool = True,
) -> np.ndarray:
    """Read `/signals[t0:t1]` as float32 `[t1-t0, N, C]`.

    With `out` (a C-contiguous float32 buffer of that shape, e.g. a view of MPI shared memory)
    the data goes straight into it with `read_direct`; no intermediate copy.
    """
    if not isinstance(info, DatasetInfo):
        info = open_dataset(info)
    t1 = info.num_steps if t1 is None else t1
    if not 0 <= t0 <= t1 <= info.num_steps:
        raise ValueError(f"time slice [{t0}, {t1}) outside [0, {info.num_steps})")
    shape = (t1 - t0, info.num_nodes, info.num_channels)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous float32 {shape}, got {out.dtype} {out.shape}")
    try:
        with h5py.File(info.path, "r") as f:
            if t1 > t0:
                f["signals"].read_direct(out, np.s_[t0:t1], np.s_[:])
    except OSError as exc:
        raise locate_bad_chunk(info, t0, t1) or file_error(
            info.path, "/signals", f"read of steps [{t0}, {t1}) failed ({exc})",
            "the file is truncated or corrupt; " + _REMAKE) from None
    if check_finite and not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))[0]
        raise file_error(info.path, "/signals",
                         f"non-finite value at step {t0 + int(bad[0])}, sensor {int(bad[1])}, channel {int(bad[2])}",
                         "store missing readings as the missing_value (0.0), not NaN/inf; "
                         "the importers do this for you")
    if check_finite:
        check_ranges(info, out, t0)
    return out


def iter_signal_blocks(info: DatasetInfo, block_steps: int | None = None, t0: int = 0, t1: int | None = None):
    """Yield `(start, block [t, N, C])` over `[t0, t1)`, one chunk-aligned block at a time."""
    t1 = info.num_steps if t1 is None else t1
    block_steps = block_steps or max(info.chunk_steps or DEFAULT_CHUNK_STEPS, 1)
    for start in range(t0, t1, block_steps):
        yield start, read_signals(info, start, min(start + block_steps, t1))
