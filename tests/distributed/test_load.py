"""pgti.distributed.load: modes, storage dtypes, per-node spans; the block arithmetic."""
import hashlib

import numpy as np
import pytest
from distributed_helpers import LOAD_CONFIGS, load_run

from pgti.data.format import read_signals
from pgti.distributed.load import _blocks, _merge, float32_to_bfloat16_bits
from pgti.distributed.partition import rank_window_starts

TIN, TOUT, BATCH = 12, 12, 8  # as in mpi_load.py
NODE_SPANS = [(10, 137), (300, 451), (160, 290)]


@pytest.mark.mpi
@pytest.mark.parametrize("ranks, ranks_per_node", LOAD_CONFIGS)
def test_every_rank_sees_the_files_bytes_in_both_modes(tmp_path_factory, virtual_hosts, ranks, ranks_per_node):
    run = load_run(tmp_path_factory.getbasetemp(), ranks, ranks_per_node, virtual_hosts)
    truth = read_signals(run["dataset"])
    file_digest = hashlib.sha1(truth).hexdigest()
    for r in run["rows"]:
        loads = r["loads"]
        assert loads["bcast/float32"]["digest"] == loads["leaders/float32"]["digest"] == file_digest
        for dtype, rel in (("float16", 2.0 ** -11), ("bfloat16", 2.0 ** -8)):
            assert loads[f"bcast/{dtype}"]["digest"] == loads[f"leaders/{dtype}"]["digest"]
            assert loads[f"bcast/{dtype}"]["max_rel_error"] <= rel  # round to nearest: half an ulp
        for load in loads.values():
            assert load["shape"] == list(truth.shape)
            assert load["refuses_writes"]  # sealed: read-only on every rank, leaders included
        assert r["open_arrays_left"] == 0  # `with` freed every array
    # the same bytes on every rank of the run
    reduced = {(r["loads"]["bcast/float16"]["digest"], r["loads"]["bcast/bfloat16"]["digest"]) for r in run["rows"]}
    assert len(reduced) == 1


@pytest.mark.mpi
@pytest.mark.parametrize("ranks, ranks_per_node", LOAD_CONFIGS)
def test_partitioned_placement_holds_only_the_nodes_span(tmp_path_factory, virtual_hosts, ranks, ranks_per_node):
    run = load_run(tmp_path_factory.getbasetemp(), ranks, ranks_per_node, virtual_hosts)
    num_steps = 500
    all_starts = np.arange(num_steps - TIN - TOUT + 1)
    per_node = ranks_per_node or ranks
    for r in run["rows"]:
        node_ranks = [q for q in range(ranks) if q // per_node == r["node"]]
        starts = np.concatenate([rank_window_starts(all_starts, q, ranks, BATCH, shuffle="local", drop_last=False)
                                 for q in node_ranks])
        expected = [int(starts.min()), int(starts.max()) + TIN + TOUT]
        assert r["span"] == r["span_from_all"] == r["span_attrs"] == expected
        assert r["span_rows"] == expected[1] - expected[0]  # the node's array is its span only
        if r["num_nodes"] > 1:
            assert r["span_rows"] < num_steps
        assert r["span_exact"] and r["windows_inside"]

        for key, load in r["explicit"].items():
            if key == "empty_on_node1":
                assert load["exact"] and (load["rows"] == 0) == (r["node"] == 1)
                continue
            lo, hi = NODE_SPANS[r["node"]]
            assert load["attrs"] == [lo, hi] and load["rows"] == hi - lo, key  # union of its ranks' spans
            assert load["exact"], key


def test_block_grid_and_interval_merge():
    assert _merge([(300, 451), (10, 137), (130, 140), (5, 5)]) == [(10, 140), (300, 451)]
    assert list(_blocks([(10, 30), (33, 35)], 7)) == [(10, 14), (14, 21), (21, 28), (28, 30), (33, 35)]


def test_bfloat16_bits_round_like_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    values = (rng.standard_normal(100_000) * 10.0 ** rng.integers(-20, 20, 100_000)).astype(np.float32)
    values[:4] = [0.0, -0.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8]  # ties round to even
    expected = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(float32_to_bfloat16_bits(values), expected)
