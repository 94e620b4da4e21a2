"""Every importer round-trips values, sensor ids, edges and timestamps; bad sources fail clearly."""
from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from pgti.data.format import open_dataset, read_signals

T, N = 40, 5
rng = np.random.default_rng(0)
VALUES = rng.uniform(5, 70, (T, N)).round(3).astype(np.float32)
VALUES[3, 2] = np.nan  # a missing reading in the source
IDS = ["717447", "773869", "767541", "716339", "773927"]
ADJ = np.where(rng.random((N, N)) < 0.5, rng.uniform(0.1, 1, (N, N)), 0.0).astype(np.float32)
np.fill_diagonal(ADJ, 1.0)
START = pd.Timestamp("2012-03-01 00:00:00")


def _edges_as_dense(info):
    dense = np.zeros((info.num_nodes, info.num_nodes), dtype=np.float32)
    dense[info.edge_index[0], info.edge_index[1]] = info.edge_weight
    return dense


def _check(path, ids=IDS, values=VALUES, adj=ADJ, start=START, interval=300):
    info = open_dataset(path)
    assert info.node_ids == list(ids)
    got = read_signals(info)[:, :, 0]
    expected = np.nan_to_num(values, nan=0.0)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_allclose(_edges_as_dense(info), adj, rtol=1e-6)
    assert info.timestamps[0] == int(start.timestamp()) and np.all(np.diff(info.timestamps) == interval)
    return info


def _dcrnn_files(tmp_path, graph_order):
    frame = pd.DataFrame(VALUES, columns=IDS, index=pd.date_range(START, periods=T, freq="5min"))
    h5 = tmp_path / "metr-la.h5"
    frame.to_hdf(h5, key="df")
    order = [IDS.index(i) for i in graph_order]
    adj_graph_order = ADJ[np.ix_(order, order)]
    pkl = tmp_path / "adj_mx.pkl"
    with open(pkl, "wb") as fh:
        pickle.dump([list(graph_order), {s: k for k, s in enumerate(graph_order)}, adj_graph_order], fh, protocol=2)
    return h5, pkl


def test_dcrnn_round_trip_reconciles_sensor_order(tmp_path, pgti_cli):
    shuffled = [IDS[k] for k in (3, 0, 4, 1, 2)]  # the pickle lists sensors in another order
    h5, pkl = _dcrnn_files(tmp_path, shuffled)
    status, out, err = pgti_cli("data", "import", "dcrnn", h5, pkl, "--out", tmp_path / "o.h5")
    assert status == 0, err
    assert "1 missing" in out
    _check(tmp_path / "o.h5")


def test_dcrnn_wrong_key_and_mismatched_graph(tmp_path, pgti_cli):
    h5, pkl = _dcrnn_files(tmp_path, IDS)
    status, _, err = pgti_cli("data", "import", "dcrnn", h5, pkl, "--key", "speed", "--out", tmp_path / "o.h5")
    assert status == 2 and "key 'speed'" in err and "keys: df" in err and "--key" in err
    other = tmp_path / "other.pkl"
    with open(other, "wb") as fh:
        pickle.dump([IDS[:4], {}, ADJ[:4, :4]], fh, protocol=2)
    status, _, err = pgti_cli("data", "import", "dcrnn", h5, other, "--out", tmp_path / "o.h5")
    assert status == 2 and "sensor_ids" in err and "773927" in err and str(other) in err


def test_csv_round_trip(tmp_path, pgti_cli):
    csv = tmp_path / "los_speed.csv"
    pd.DataFrame(VALUES, columns=IDS).to_csv(csv, index=False)
    adj = tmp_path / "los_adj.csv"
    np.savetxt(adj, ADJ, delimiter=",")
    status, _, err = pgti_cli("data", "import", "csv", csv, adj, "--out", tmp_path / "o.h5")
    assert status == 2 and "--start" in err and "--interval" in err  # the source has no timestamps
    status, _, err = pgti_cli("data", "import", "csv", csv, adj, "--out", tmp_path / "o.h5",
                              "--start", "2012-03-01", "--interval", "300")
    assert status == 0, err
    _check(tmp_path / "o.h5")


def test_csv_size_mismatch(tmp_path, pgti_cli):
    csv = tmp_path / "s.csv"
    pd.DataFrame(VALUES, columns=IDS).to_csv(csv, index=False)
    adj = tmp_path / "a.csv"
    np.savetxt(adj, ADJ[:4, :4], delimiter=",")
    status, _, err = pgti_cli("data", "import", "csv", csv, adj, "--out", tmp_path / "o.h5",
                              "--start", "2012-03-01", "--interval", "300")
    assert status == 2 and str(adj) in err and "N=5" in err


def test_npz_round_trip_with_gaussian_kernel(tmp_path, pgti_cli):
    data = np.stack([np.nan_to_num(VALUES), VALUES * 2, VALUES * 2.5], axis=-1)  # speed <= 175 mph
    npz = tmp_path / "PEMS04.npz"
    np.savez(npz, data=data)
    dist = pd.DataFrame({"from": [0, 1, 2, 3], "to": [1, 2, 3, 4], "cost": [100.0, 300.0, 500.0, 2000.0]})
    csv = tmp_path / "PEMS04.csv"
    dist.to_csv(csv, index=False)
    status, _, err = pgti_cli("data", "import", "npz", npz, csv, "--out", tmp_path / "o.h5",
                              "--start", "2018-01-01", "--interval", "300")
    assert status == 0, err
    info = open_dataset(tmp_path / "o.h5")
    assert info.channels == ["flow", "occupancy", "speed"] and info.num_channels == 3
    np.testing.assert_array_equal(read_signals(info), np.nan_to_num(data))
    sigma = dist["cost"].std(ddof=0)
    w = np.exp(-np.square(dist["cost"].to_numpy() / sigma))
    dense = _edges_as_dense(info)
    for (a, b), weight in zip(dist[["from", "to"]].to_numpy(), w):
        assert dense[a, b] == pytest.approx(weight if weight >= 0.1 else 0.0, rel=1e-6)
    assert np.all(np.diag(dense) == 1.0)


def test_pgt_round_trip(tmp_path, pgti_cli):
    values = tmp_path / "node_values.npy"
    np.save(values, VALUES[:, :, None])
    adj = tmp_path / "adj_mat.npy"
    np.save(adj, ADJ)
    status, _, err = pgti_cli("data", "import", "pgt", values, adj, "--out", tmp_path / "o.h5",
                              "--start", "2012-03-01T00:00", "--interval", "300", "--channels", "speed")
    assert status == 0, err
    info = _check(tmp_path / "o.h5", ids=[str(i) for i in range(N)])
    assert info.channels == ["speed"]


def test_import_rejects_infinite_and_unsorted(tmp_path, pgti_cli):
    bad = VALUES.copy()
    bad[7, 1] = np.inf
    values = tmp_path / "nv.npy"
    np.save(values, bad)
    adj = tmp_path / "adj.npy"
    np.save(adj, ADJ)
    status, _, err = pgti_cli("data", "import", "pgt", values, adj, "--out", tmp_path / "o.h5",
                              "--start", "2012-03-01", "--interval", "300")
    assert status == 2 and "infinite value at index (7, 1" in err
    csv = tmp_path / "t.csv"
    frame = pd.DataFrame(VALUES, columns=IDS)
    frame.insert(0, "timestamp", pd.date_range(START, periods=T, freq="5min")[::-1])
    frame.to_csv(csv, index=False)
    np.savetxt(tmp_path / "a.csv", ADJ, delimiter=",")
    status, _, err = pgti_cli("data", "import", "csv", csv, tmp_path / "a.csv", "--out", tmp_path / "o.h5")
    assert status == 2 and "not sorted" in err and not (tmp_path / "o.h5").exists()


def test_missing_source_file(tmp_path, pgti_cli):
    status, _, err = pgti_cli("data", "import", "npz", tmp_path / "none.npz", tmp_path / "d.csv",
                              "--out", tmp_path / "o.h5")
    assert status == 2 and "none.npz" in err and "no such file" in err


def test_wrong_kind_of_file_is_one_line_and_out_never_overwrites_an_input(tmp_path, pgti_cli):
    h5, pkl = _dcrnn_files(tmp_path, IDS)
    before = h5.read_bytes()
    status, _, err = pgti_cli("data", "import", "dcrnn", h5, pkl, "--out", h5)  # the README's old example
    assert status == 2 and "is also an input file" in err, err
    assert h5.read_bytes() == before
    csv = tmp_path / "los_speed.csv"
    pd.DataFrame(VALUES, columns=IDS).to_csv(csv, index=False)
    status, _, err = pgti_cli("data", "import", "dcrnn", csv, pkl, "--out", tmp_path / "o.h5")  # a CSV as the H5
    assert status == 2 and "not a readable pandas HDF5 file" in err and "Traceback" not in err, err
    npy = tmp_path / "adj_mat.npy"
    np.save(npy, ADJ)
    status, _, err = pgti_cli("data", "import", "npz", npy, csv, "--out", tmp_path / "o.h5")  # .npy as the .npz
    assert status == 2 and "not an .npz archive" in err and "Traceback" not in err, err


def _one_line(result, words):
    status, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in err, err


def test_nonsense_sources_are_one_line_each(tmp_path, pgti_cli):
    """What used to import silently (negative weights, sigma nan or 0) or with a traceback
    (a word among the readings, a 1-D npz array, an empty distance file, an .npz for pgt)."""
    out, when = tmp_path / "o.h5", ["--start", "2012-03-01", "--interval", "300"]
    csv, adj = tmp_path / "s.csv", tmp_path / "a.csv"
    pd.DataFrame(VALUES, columns=IDS).to_csv(csv, index=False)
    np.savetxt(adj, -np.ones((N, N)), delimiter=",")
    _one_line(pgti_cli("data", "import", "csv", csv, adj, "--out", out, *when), "25 negative weight(s), e.g. -1 at [0, 0]")
    np.savetxt(adj, ADJ, delimiter=",")
    words = pd.DataFrame(VALUES, columns=IDS).astype(object)
    words.iat[6, 2] = "n/a km"
    words.to_csv(csv, index=False)
    _one_line(pgti_cli("data", "import", "csv", csv, adj, "--out", out, *when),
              f"row 8, column '{IDS[2]}': 'n/a km' is not a number")
    npz, dist = tmp_path / "p.npz", tmp_path / "d.csv"
    np.savez(npz, data=np.arange(10.0))
    pd.DataFrame({"from": [0], "to": [1], "cost": [5.0]}).to_csv(dist, index=False)
    _one_line(pgti_cli("data", "import", "npz", npz, dist, "--out", out), "data: has shape (10,)")
    np.savez(npz, data=np.nan_to_num(VALUES)[:, :, None] * 4)  # km/h, up to 280, named speed
    _one_line(pgti_cli("data", "import", "npz", npz, dist, "--out", out, "--channels", "speed"),
              "is outside its plausible range [0, 200]; fix or drop the source's bad readings")
    assert pgti_cli("data", "import", "npz", npz, dist, "--out", out, "--channels", "speed", "--valid-range",
                    "speed=0:300")[0] == 0
    assert open_dataset(out).value_ranges == {0: (0.0, 300.0)}
    out.unlink()
    np.savez(npz, data=np.nan_to_num(VALUES))
    for sigma in ("nan", "0", "-3"):
        _one_line(pgti_cli("data", "import", "npz", npz, dist, "--out", out, "--sigma", sigma), "must be a positive")
    dist.write_text("")
    _one_line(pgti_cli("data", "import", "npz", npz, dist, "--out", out), "not a readable CSV")
    dist.write_text("from,to,cost\n")
    _one_line(pgti_cli("data", "import", "npz", npz, dist, "--out", out), "has no rows")
    np.save(tmp_path / "adj.npy", ADJ)
    _one_line(pgti_cli("data", "import", "pgt", npz, tmp_path / "adj.npy", "--out", out, *when), "is an .npz archive")
    assert not out.exists()


def test_integer_time_columns_need_their_unit(tmp_path, pgti_cli):
    csv, adj = tmp_path / "s.csv", tmp_path / "a.csv"
    frame = pd.DataFrame(VALUES, columns=IDS)
    frame.insert(0, "time", np.arange(T) * 300)  # seconds: pandas read them as nanoseconds ("duplicate timestamp 0")
    frame.to_csv(csv, index=False)
    np.savetxt(adj, ADJ, delimiter=",")
    _one_line(pgti_cli("data", "import", "csv", csv, adj, "--out", tmp_path / "o.h5"), "give --time-unit s, ms or ns")
    status, _, err = pgti_cli("data", "import", "csv", csv, adj, "--out", tmp_path / "o.h5", "--time-unit", "s")
    assert status == 0, err
    assert list(open_dataset(tmp_path / "o.h5").timestamps[:3]) == [0, 300, 600]


def test_a_short_row_is_stored_as_missing_with_a_warning(tmp_path, pgti_cli):
    csv, adj = tmp_path / "s.csv", tmp_path / "a.csv"
    lines = pd.DataFrame(np.nan_to_num(VALUES), columns=IDS).to_csv(index=False).splitlines()
    lines[5] = ",".join(lines[5].split(",")[:3])  # a row cut short
    csv.write_text("\n".join(lines) + "\n")
    np.savetxt(adj, ADJ, delimiter=",")
    status, _, err = pgti_cli("data", "import", "csv", csv, adj, "--out", tmp_path / "o.h5", "--start", "2012-03-01",
                              "--interval", "300")
    assert status == 0 and "1 row(s) have fewer fields than the header (first: line 6)" in err, err
    assert (read_signals(open_dataset(tmp_path / "o.h5"))[4, 3:, 0] == 0).all()
