"""pgti HDF5 format: round trip, slice reads into caller buffers, atomic writes, validation."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from pgti.data.format import FORMAT_VERSION, DatasetWriter, open_dataset, read_signals
from pgti.errors import UserError


def test_round_trip_and_metadata(make_dataset):
    path = make_dataset(T=300, N=5, C=2, seed=3)
    info = open_dataset(path)
    assert info.shape == (300, 5, 2)
    assert info.channels == ["c0", "c1"] and info.node_ids == [f"s{i}" for i in range(5)]
    assert info.interval_seconds == 300 and np.all(np.diff(info.timestamps) == 300)
    with h5py.File(path) as f:
        assert f.attrs["format"] == "pgti-dataset" and f.attrs["version"] == FORMAT_VERSION
        assert f["signals"].chunks[0] <= 288
        np.testing.assert_array_equal(read_signals(info), f["signals"][()])
    assert info.window_bytes(12, 12) == (300 - 23) * 24 * 5 * 2 * 4


def test_slice_reads_straight_into_a_buffer(make_dataset):
    info = open_dataset(make_dataset(T=400, N=6, C=1))
    full = read_signals(info)
    buf = np.full((150, 6, 1), -1.0, dtype=np.float32)
    out = read_signals(info, 100, 250, out=buf)
    assert out is buf
    np.testing.assert_array_equal(buf, full[100:250])
    with pytest.raises(ValueError):
        read_signals(info, 0, 10, out=np.empty((10, 6, 1), dtype=np.float64))


def test_writer_streams_blocks_and_is_atomic(tmp_path):
    path = tmp_path / "w.h5"
    kw = dict(node_ids=["a", "b"], channels=["speed"], interval_seconds=60,
              edge_index=np.array([[0], [1]]), edge_weight=np.array([1.0]))
    with pytest.raises(RuntimeError):
        with DatasetWriter(path, **kw) as w:
            w.append(np.ones((10, 2, 1)), np.arange(10) * 60)
            raise RuntimeError("crash mid-write")
    assert not path.exists() and not list(tmp_path.iterdir())  # nothing half-written is left
    with DatasetWriter(path, **kw) as w:
        for k in range(3):
            w.append(np.full((7, 2, 1), k), 60 * np.arange(7 * k, 7 * k + 7))
    info = open_dataset(path)
    assert info.num_steps == 21
    np.testing.assert_array_equal(read_signals(info)[:, 0, 0], np.repeat([0, 1, 2], 7))


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _expect(path, *words):
    with pytest.raises(UserError) as err:
        info = open_dataset(path)
        read_signals(info)
    msg = str(err.value)
    assert str(path) in msg and "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.h5", "no such file", "pgti data synth")


def test_wrong_version_and_wrong_format(make_dataset):
    p = make_dataset()
    _edit(p, lambda f: f.attrs.__setitem__("version", 99))
    _expect(p, "attrs/version", "99", "re-create")
    q = make_dataset("q.h5")
    _edit(q, lambda f: f.attrs.__setitem__("format", "something-else"))
    _expect(q, "attrs/format", "pgti data import")


def test_truncated_file(make_dataset):
    p = make_dataset(T=2000, N=20)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    _expect(p, "truncated or corrupt")


def test_signals_graph_size_mismatch(make_dataset):
    p = make_dataset(N=5)
    _edit(p, lambda f: (f.__delitem__("nodes/id"), f.create_dataset("nodes/id", data=["a", "b", "c"],
                                                                     dtype=h5py.string_dtype())))
    _expect(p, "/nodes/id", "3 ids", "N=5")


def test_edge_index_out_of_range(make_dataset):
    p = make_dataset(N=5)

    def bad(f):
        ei = f["graph/edge_index"][()]
        ei[1, 0] = 17
        f["graph/edge_index"][...] = ei

    _edit(p, bad)
    _expect(p, "/graph/edge_index", "out of range", "N=5")


@pytest.mark.parametrize("kind", ["unsorted", "duplicate"])
def test_bad_timestamps(make_dataset, kind):
    p = make_dataset(T=50)

    def bad(f):
        ts = f["timestamps"][()]
        ts[20] = ts[19] if kind == "duplicate" else ts[10]
        f["timestamps"][...] = ts

    _edit(p, bad)
    _expect(p, "/timestamps", kind, "index 20")


def test_non_finite_values(make_dataset):
    p = make_dataset(T=50, N=4, C=1)

    def bad(f):
        f["signals"][33, 2, 0] = np.nan

    _edit(p, bad)
    _expect(p, "/signals", "non-finite", "step 33", "sensor 2", "missing_value")


def test_bad_input_is_one_line_exit_2_via_cli(make_dataset, pgti_cli, tmp_path):
    status, out, err = pgti_cli("data", "info", tmp_path / "missing.h5")
    assert status == 2 and err.count("\n") == 1 and err.startswith("pgti: error:") and "Traceback" not in err


def test_attributes_and_weights_of_the_wrong_type(make_dataset):
    """(they raised ValueError / TypeError tracebacks from int(), float() and np.isfinite)"""
    p = make_dataset("v.h5")
    _edit(p, lambda f: f.attrs.__setitem__("version", "abc"))
    _expect(p, "attrs/version", "'abc', not a number")
    _edit(p, lambda f: f.attrs.__setitem__("version", float("inf")))
    _expect(p, "attrs/version", "inf, not a number")
    q = make_dataset("m.h5")
    _edit(q, lambda f: f.attrs.__setitem__("missing_value", "abc"))
    _expect(q, "attrs/missing_value", "'abc', not a number")
    r = make_dataset("w.h5")

    def strings(f):
        n = f["graph/edge_weight"].shape[0]
        del f["graph/edge_weight"]
        f.create_dataset("graph/edge_weight", data=["x"] * n, dtype=h5py.string_dtype())

    _edit(r, strings)
    _expect(r, "/graph/edge_weight", "expected float32 weights")
