"""`pgti data import`: convert the public dataset formats into the pgti HDF5 format.

Sources (each small file layout as published):
  dcrnn  pandas HDF5 (`metr-la.h5` key `df`, `pems-bay.h5` key `speed`): a time x sensor frame
         with a DatetimeIndex, + DCRNN's `adj_mx.pkl` (python-2 pickle of
         `[sensor_ids, id_to_index, dense W]`); the graph's sensor order is reconciled by id.
  csv    a time x sensor CSV with a header of sensor ids (T-GCN `los_speed.csv`), optionally a
         first `timestamp` column, + a dense adjacency CSV (no header).
  npz    PEMS03/04/07/08 (`data` [T, N, C]) + a distance CSV `from,to,cost` turned into DCRNN's
         Gaussian-kernel weights `exp(-(d/sigma)^2)` (sigma = std of the distances), kept >= 0.1.
  pgt    PyTorch Geometric Temporal's `node_values.npy` [T, N, C] + `adj_mat.npy` [N, N].
Missing readings (NaN in the source) are stored as the missing value 0.0, as in PeMS; an
infinite value is an error. Sources without timestamps need `--start` and `--interval`.
"""
from __future__ import annotations

import datetime as _dt
import math
import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from pgti.data.format import open_dataset, write_dataset
from pgti.data.verify import check_ranges, value_ranges
from pgti.errors import UserError, file_error
from pgti.outputs import add_force_argument, check_output

KERNEL_THRESHOLD = 0.1


# --------------------------------------------------------------------------- helpers


def _need(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise file_error(path, "", "no such file", "check the path")
    return path


def _timestamps(n: int, start: str | None, interval: int | None, source: Path) -> np.ndarray:
    if start is None or interval is None:
        raise file_error(source, "timestamps", "the source has no timestamps",
                         "give --start YYYY-MM-DD[THH:MM] and --interval SECONDS")
    try:
        t0 = _dt.datetime.fromisoformat(start)
    except ValueError:
        raise UserError(f"--start {start!r}: not an ISO date/time; use e.g. 2012-03-01 or 2012-03-01T00:00") from None
    if t0.tzinfo is None:
        t0 = t0.replace(tzinfo=_dt.timezone.utc)
    if interval <= 0:
        raise UserError(f"--interval {interval}: must be a positive number of seconds, e.g. 300")
    return int(t0.timestamp()) + np.arange(n, dtype=np.int64) * int(interval)


def _interval_of(timestamps: np.ndarray, given: int | None) -> int:
    if given:
        return int(given)
    if timestamps.size < 2:
        return 300
    return int(np.median(np.diff(timestamps)))


def _clean(values: np.ndarray, source: Path, field: str, missing_value: float = 0.0) -> tuple[np.ndarray, int]:
    values = np.asarray(values, dtype=np.float32)
    if np.isinf(values).any():
        idx = tuple(int(i) for i in np.argwhere(np.isinf(values))[0])
        raise file_error(source, field, f"infinite value at index {idx}", "fix the source; missing readings should be NaN or 0")
    nan = np.isnan(values)
    n_missing = int(nan.sum())
    if n_missing:
        values = np.where(nan, np.float32(missing_value), values)
    return values, n_missing


def dense_to_edges(adj: np.ndarray, source: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    adj = np.asarray(adj, dtype=np.float64)
    if adj.shape != (n, n):
        raise file_error(source, "adjacency", f"is {adj.shape[0]}x{adj.shape[1] if adj.ndim > 1 else ''}, "
                         f"the signals have N={n} sensors", "use the adjacency of the same sensor set")
    if not np.isfinite(adj).all():
        raise file_error(source, "adjacency", "has non-finite entries", "fix the matrix")
    if (adj < 0).any():
        i, j = (int(k) for k in np.argwhere(adj < 0)[0])
        raise file_error(source, "adjacency", f"has {int((adj < 0).sum())} negative weight(s), e.g. {adj[i, j]:g} at "
                         f"[{i}, {j}]", "edge weights must be >= 0 (0 = no edge); fix the matrix")
    src, dst = np.nonzero(adj)
    return np.stack([src, dst]).astype(np.int64), adj[src, dst].astype(np.float32)


def _save(out, signals, timestamps, node_ids, edge_index, edge_weight, channels, interval, name, n_missing, source,
          valid_range=None):
    channels = list(channels) if channels else [f"ch{i}" for i in range(signals.shape[2])]
    if len(channels) != signals.shape[2]:
        raise UserError(f"--channels names {len(channels)} channels but {source} has {signals.shape[2]}")
    attrs = {"imported_from": str(source), **_range_attrs(valid_range or [], channels)}
    order = np.argsort(timestamps, kind="stable")
    if np.any(np.diff(timestamps[order]) == 0):
        i = int(np.flatnonzero(np.diff(timestamps[order]) == 0)[0])
        raise file_error(source, "timestamps", f"duplicate timestamp {int(timestamps[order][i])}",
                         "drop duplicate rows from the source")
    if not np.array_equal(order, np.arange(len(order))):
        raise file_error(source, "timestamps", "not sorted in time", "sort the source by time before importing")
    ids = [str(i) for i in node_ids]
    where = SimpleNamespace(path=source, channels=channels, missing_value=0.0, timestamps=timestamps, node_ids=ids,
                            value_ranges=value_ranges(channels, attrs))
    # garbage is refused here, not at the first training run
    check_ranges(where, signals, 0, fix="give the channel's range with --valid-range NAME=LO:HI")
    path = write_dataset(out, signals, timestamps, node_ids=ids, channels=channels,
                         interval_seconds=interval, edge_index=edge_index, edge_weight=edge_weight,
                         name=name, attrs=attrs)
    info = open_dataset(path)  # validate what we wrote
    print(f"wrote {path}: T={info.num_steps} N={info.num_nodes} C={info.num_channels} E={info.num_edges}; "
          f"{n_missing} missing readings (NaN) stored as {info.missing_value:g}")
    return path


def _range_attrs(items: list[str], channels: list[str]) -> dict:
    """`--valid-range NAME=LO:HI` items -> attrs valid_min / valid_max (NaN where not given)."""
    if not items:
        return {}
    low, high = np.full(len(channels), np.nan), np.full(len(channels), np.nan)
    for item in items:
        name, _, bounds = item.partition("=")
        lo, _, hi = bounds.partition(":")
        try:
            c = channels.index(name)
            low[c], high[c] = float(lo) if lo else -np.inf, float(hi) if hi else np.inf
        except ValueError:
            raise UserError(f"--valid-range {item!r}: give NAME=LO:HI with NAME one of {', '.join(channels)} and "
                            "numbers LO, HI (either may be empty)") from None
    return {"valid_min": low, "valid_max": high}


# --------------------------------------------------------------------------- sources


def import_dcrnn(h5, adj_pkl, out, key=None, start=None, interval=None, channels=None, name=None, valid_range=None):
    import pandas as pd

    h5, adj_pkl = _need(h5), _need(adj_pkl)
    try:
        with pd.HDFStore(h5, "r") as store:
            keys = [k.lstrip("/") for k in store.keys()]
            if key is None:
                key = next((k for k in ("df", "speed") if k in keys), keys[0] if len(keys) == 1 else None)
            if key not in keys:
                raise file_error(h5, f"key {key!r}", f"not in the file (keys: {', '.join(keys) or 'none'})",
                                 "pass --key with one of those")
            frame = store[key]
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - PyTables raises its own kinds for a non-HDF5 file
        raise file_error(h5, "", f"not a readable pandas HDF5 file ({exc.__class__.__name__})",
                         "give DCRNN's metr-la.h5 / pems-bay.h5") from None
    try:
        with open(adj_pkl, "rb") as fh:
            sensor_ids, _, adj = pickle.load(fh, encoding="latin1")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise file_error(adj_pkl, "", f"not DCRNN's adj_mx.pkl ({exc.__class__.__name__}: {exc})",
                         "give the [sensor_ids, id_to_index, matrix] pickle from DCRNN's data/sensor_graph") from None
    columns = [str(c) for c in frame.columns]
    graph_ids = [str(s) for s in sensor_ids]
    if sorted(columns) != sorted(graph_ids):
        only_sig = sorted(set(columns) - set(graph_ids))[:5]
        only_graph = sorted(set(graph_ids) - set(columns))[:5]
        raise file_error(adj_pkl, "sensor_ids", f"{len(graph_ids)} graph sensors vs {len(columns)} columns in {h5}; "
                         f"only in signals {only_sig}, only in graph {only_graph}", "use the graph of the same dataset")
    # Reorder the graph to the signal columns' order.
    position = {sid: i for i, sid in enumerate(graph_ids)}
    perm = np.array([position[c] for c in columns])
    adj = np.asarray(adj)[np.ix_(perm, perm)]
    values, n_missing = _clean(frame.to_numpy(), h5, f"key {key!r}")
    if isinstance(frame.index, pd.DatetimeIndex):
        idx = frame.index.tz_localize("UTC") if frame.index.tz is None else frame.index.tz_convert("UTC")
        timestamps = np.asarray(idx.as_unit("s").asi8, dtype=np.int64)
    else:
        timestamps = _timestamps(len(frame), start, interval, h5)
    edge_index, edge_weight = dense_to_edges(adj, adj_pkl, len(columns))
    return _save(out, values[:, :, None], timestamps, columns, edge_index, edge_weight, channels or ["speed"],
                 _interval_of(timestamps, interval), name or Path(h5).stem, n_missing, h5, valid_range=valid_range)


def _warn_short_rows(csv: Path, fields: int) -> None:
    """A row with fewer fields than the header: pandas fills NaN (stored as missing); say so."""
    import csv as csv_module
    import sys

    with open(csv, newline="") as fh:
        short = [i for i, row in enumerate(csv_module.reader(fh), start=1) if row and len(row) < fields]
    if short:
        print(f"pgti: warning: {csv}: {len(short)} row(s) have fewer fields than the header (first: line "
              f"{short[0]}); their missing fields are stored as missing readings", file=sys.stderr)


def import_csv(csv, adj_csv, out, start=None, interval=None, channels=None, name=None, time_unit=None, valid_range=None):
    import pandas as pd

    csv, adj_csv = _need(csv), _need(adj_csv)
    try:
        frame = pd.read_csv(csv)
    except Exception as exc:  # noqa: BLE001
        raise file_error(csv, "", f"not a readable CSV ({exc.__class__.__name__})", "give a time x sensor CSV") from None
    first = str(frame.columns[0]).lower()
    if first in ("timestamp", "time", "date", "datetime"):
        column = frame.pop(frame.columns[0])
        if column.dtype.kind in "iuf" and time_unit is None:
            raise file_error(csv, f"column {column.name!r}", "holds numbers, not dates: seconds, "
                             "milliseconds or nanoseconds since 1970?", "give --time-unit s, ms or ns")
        try:
            idx = pd.to_datetime(column, utc=True, unit=time_unit if column.dtype.kind in "iuf" else None)
        except (ValueError, TypeError, OverflowError) as exc:
            raise file_error(csv, f"column {first!r}", f"not dates ({exc})", "give ISO dates or --time-unit") from None
        timestamps = np.asarray(pd.DatetimeIndex(idx).as_unit("s").asi8, dtype=np.int64)
    else:
        timestamps = _timestamps(len(frame), start, interval, csv)
    _warn_short_rows(csv, len(frame.columns) + (first in ("timestamp", "time", "date", "datetime")))
    try:
        adj = np.loadtxt(adj_csv, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise file_error(adj_csv, "", f"not a numeric dense matrix ({exc})", "give an N x N CSV without header") from None
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & frame.notna()
    if bad.to_numpy().any():
        row, col = (int(k) for k in np.argwhere(bad.to_numpy())[0])
        raise file_error(csv, f"row {row + 2}, column {frame.columns[col]!r}", f"{str(frame.iat[row, col])[:40]!r} is "
                         "not a number", "readings must be numbers (an empty field or NaN is a missing reading)")
    values, n_missing = _clean(numeric.to_numpy(dtype=np.float64), csv, "values")
    edge_index, edge_weight = dense_to_edges(adj, adj_csv, values.shape[1])
    return _save(out, values[:, :, None], timestamps, list(frame.columns), edge_index, edge_weight,
                 channels or ["speed"], _interval_of(timestamps, interval), name or csv.stem, n_missing, csv, valid_range=valid_range)


def distance_kernel(distance_csv: Path, n: int, sigma: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DCRNN's thresholded Gaussian kernel from a `from,to,cost` CSV, plus unit self-loops."""
    import pandas as pd

    if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
        raise UserError(f"--sigma {sigma}: must be a positive number (the kernel's width, in the distances' units); "
                        "leave it out to use the distances' standard deviation")
    try:
        frame = pd.read_csv(distance_csv)
    except Exception as exc:  # noqa: BLE001 - pandas: EmptyDataError, ParserError, UnicodeDecodeError
        raise file_error(distance_csv, "", f"not a readable CSV ({exc.__class__.__name__})",
                         "give a from,to,cost CSV") from None
    cols = [str(c).lower() for c in frame.columns]
    if len(cols) < 3 or cols[0] != "from" or cols[1] != "to":
        raise file_error(distance_csv, "header", f"is {','.join(map(str, frame.columns))}", "expected from,to,cost")
    try:
        src = frame.iloc[:, 0].to_numpy(np.int64)
        dst = frame.iloc[:, 1].to_numpy(np.int64)
        dist = frame.iloc[:, 2].to_numpy(np.float64)
    except (ValueError, TypeError):
        raise file_error(distance_csv, "from,to,cost", "has a cell that is not a number (or an empty one)",
                         "from/to must be sensor indices, cost a distance") from None
    if src.size == 0:
        raise file_error(distance_csv, "", "has no rows", "give the from,to,cost distances of the dataset")
    if min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n:
        raise file_error(distance_csv, "from/to", f"sensor index out of range for N={n}",
                         "use the distance file of the same dataset")
    if not np.isfinite(dist).all() or (dist < 0).any():
        raise file_error(distance_csv, "cost", "has negative or non-finite distances", "fix the distances")
    sigma = float(sigma or (dist.std() if dist.size > 1 and dist.std() > 0 else 1.0))
    weight = np.exp(-np.square(dist / sigma))
    keep = weight >= KERNEL_THRESHOLD
    loops = np.arange(n)
    edge_index = np.concatenate([np.stack([src[keep], dst[keep]]), np.stack([loops, loops])], axis=1)
    edge_weight = np.concatenate([weight[keep], np.ones(n)]).astype(np.float32)
    return edge_index.astype(np.int64), edge_weight


def import_npz(npz, distance_csv, out, start=None, interval=None, channels=None, name=None, sigma=None, valid_range=None):
    npz, distance_csv = _need(npz), _need(distance_csv)
    try:
        archive = np.load(npz)
    except Exception as exc:  # noqa: BLE001
        raise file_error(npz, "", f"not a readable .npz ({exc.__class__.__name__})", "give PEMS0X.npz") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise file_error(npz, "", "is a single .npy array, not an .npz archive", "give PEMS0X.npz (key 'data')")
    if "data" not in archive:
        raise file_error(npz, "key 'data'", f"not in the archive (keys: {', '.join(archive.files)})",
                         "give a PEMS03/04/07/08-style npz with data [T, N, C]")
    data = archive["data"]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise file_error(npz, "data", f"has shape {data.shape}", "expected [T, N, C] (or [T, N])")
    values, n_missing = _clean(data, npz, "data")
    edge_index, edge_weight = distance_kernel(distance_csv, values.shape[1], sigma)
    if channels is None and values.shape[2] == 3:
        channels = ["flow", "occupancy", "speed"]  # PEMS04/08 channel order
    if channels is None and values.shape[2] == 1:
        channels = ["flow"]  # PEMS03/07
    timestamps = _timestamps(values.shape[0], start or "2018-01-01", interval or 300, npz)
    return _save(out, values, timestamps, range(values.shape[1]), edge_index, edge_weight, channels,
                 interval or 300, name or npz.stem, n_missing, npz, valid_range=valid_range)


def import_pgt(node_values, adj_mat, out, start=None, interval=None, channels=None, name=None, valid_range=None):
    node_values, adj_mat = _need(node_values), _need(adj_mat)
    try:
        values = np.load(node_values)
        adj = np.load(adj_mat)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{node_values} / {adj_mat}: not readable .npy files ({exc})") from None
    for path, array in ((node_values, values), (adj_mat, adj)):
        if not isinstance(array, np.ndarray):
            raise file_error(path, "", "is an .npz archive, not one .npy array",
                             "give node_values.npy and adj_mat.npy (the npz importer reads PEMS0X.npz)")
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3:
        raise file_error(node_values, "array", f"has shape {values.shape}", "expected [T, N, C]")
    values, n_missing = _clean(values, node_values, "node_values")
    edge_index, edge_weight = dense_to_edges(adj, adj_mat, values.shape[1])
    timestamps = _timestamps(values.shape[0], start, interval, node_values)
    return _save(out, values, timestamps, range(values.shape[1]), edge_index, edge_weight, channels,
                 interval, name or node_values.parent.name or "pgt", n_missing, node_values, valid_range=valid_range)


# --------------------------------------------------------------------------- CLI


def add_arguments(p) -> None:
    p.add_argument("source", choices=["dcrnn", "csv", "npz", "pgt"],
                   help="dcrnn: DCRNN's metr-la.h5/pems-bay.h5 + adj_mx.pkl; csv: a time x sensor CSV + an N x N "
                        "adjacency CSV; npz: PEMS03/04/07/08 .npz + distance CSV; pgt: PyTorch Geometric "
                        "Temporal's node_values.npy + adj_mat.npy (README: Importing real data)")
    p.add_argument("inputs", nargs=2, metavar="FILE",
                   help="dcrnn: H5 ADJ_PKL | csv: SIGNALS_CSV ADJ_CSV | npz: NPZ DISTANCE_CSV | pgt: NODE_VALUES ADJ_MAT")
    p.add_argument("--out", required=True, help="output pgti dataset (.h5; never one of the inputs)")
    add_force_argument(p)
    p.add_argument("--key", help="dcrnn: the pandas key (default: df or speed)")
    p.add_argument("--start", help="first timestamp (ISO) when the source has none")
    p.add_argument("--interval", type=int, help="seconds between readings when the source has no timestamps")
    p.add_argument("--valid-range", action="append", metavar="NAME=LO:HI",
                   help="a channel's plausible range (stored in the file; default: speed 0:200; repeatable)")
    p.add_argument("--time-unit", choices=["s", "ms", "ns"],
                   help="csv: the unit of a numeric timestamp column (since 1970); required for one, never guessed")
    p.add_argument("--channels", help="comma-separated channel names")
    p.add_argument("--sigma", type=float, help="npz: Gaussian kernel width (default: std of the distances)")
    p.add_argument("--name", help="dataset name (default: from the file name)")


def run(args) -> int:
    channels = args.channels.split(",") if args.channels else None
    common = dict(start=args.start, interval=args.interval, channels=channels, name=args.name,
                  valid_range=args.valid_range)
    a, b = args.inputs
    check_output(args.out, force=args.force, reads=(a, b))
    if args.source == "dcrnn":
        import_dcrnn(a, b, args.out, key=args.key, **common)
    elif args.source == "csv":
        import_csv(a, b, args.out, time_unit=args.time_unit, **common)
    elif args.source == "npz":
        import_npz(a, b, args.out, sigma=args.sigma, **common)
    else:
        import_pgt(a, b, args.out, **common)
    return 0
