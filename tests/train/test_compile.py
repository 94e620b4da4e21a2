"""`model.compile`: torch.compile of the training step (pgti.models.compiled).

The in-process test compiles A3T-GCN with inductor at the shapes of the `pgti train` runs and
the benchmark below (tiny dataset, batch 32, 3 steps in and out, hidden size 8), so those find
inductor's cache filled; the DCRNN test traces with "aot_eager" (dynamo's graphs and guards, no
C++ compiler).
"""
from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess

import pytest
import torch
from torch._dynamo.utils import counters
from train_helpers import ENV

from pgti.models.compiled import compile_model, probe_step
from pgti.models.registry import build_model
from testlib import mpirun_command, train_command

STEPS = 3  # in and out: a short sequence compiles in a fraction of the time of 12
COMPILED_RUN = ["model.name=a3tgcn", "model.params.hidden_size=8", f"data.input_steps={STEPS}",
                f"data.output_steps={STEPS}", "train.batch_size=32", "train.epochs=1",
                "train.max_steps=6", "model.compile=true", "log.every_steps=2"]


@pytest.fixture
def cxx():
    """Inductor's C++ compiler (CXX, else g++), or the test is skipped with the reason."""
    name = os.environ.get("CXX", "g++")
    if shutil.which(name) is None:
        pytest.skip(f"inductor needs a C++ compiler: no {name} on PATH")


def tiny_model(name: str, data, **params):
    from pgti.data.format import open_dataset

    info = open_dataset(data)
    torch.manual_seed(0)
    return build_model(name, num_nodes=info.num_nodes, input_channels=info.num_channels + 1,
                       output_channels=info.num_channels, input_steps=STEPS, output_steps=STEPS,
                       edge_index=info.edge_index, edge_weight=info.edge_weight, **params), info


def batch(info, size=32, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(size, STEPS, info.num_nodes, info.num_channels + 1, generator=g),
            torch.randn(size, STEPS, info.num_nodes, info.num_channels, generator=g))


def test_the_sparse_product_operator_is_registered_correctly():
    """torch.library's own checks of pgti::csr_matmul (schema, fake, autograd, AOT dispatch),
    and its value and gradient against the dense product."""
    from pgti.models.sparse import SparseMatrix, csr_product

    a = SparseMatrix.from_coo([0, 0, 1, 2, 2], [0, 2, 1, 0, 3], [1.0, -2.0, 0.5, 3.0, 1.5], (3, 4))
    p = a.parts
    x = torch.randn(4, 5, requires_grad=True)
    args = (p["crow"], p["col"], p["val"], p["t_crow"], p["t_col"], p["t_val"], x)
    torch.library.opcheck(csr_product, args)
    out = csr_product(*args)
    out.backward(torch.ones_like(out))
    dense = a.to_dense()
    torch.testing.assert_close(out, dense @ x.detach())
    torch.testing.assert_close(x.grad, dense.t() @ torch.ones(3, 5))


def test_compiled_a3tgcn_is_one_graph_and_matches_eager(tiny_data, one_thread, cxx):
    eager, info = tiny_model("a3tgcn", tiny_data, hidden_size=8)
    model = copy.deepcopy(eager)
    x, y = batch(info)
    torch._dynamo.reset()
    counters.clear()
    compiled, failure = compile_model(model, probe_step(torch.zeros_like(x), torch.zeros_like(y)))
    assert failure is None
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])  # sparse products inside
    for m in (compiled, eager):
        m(x, y, global_step=0).square().mean().backward()
    torch.testing.assert_close(compiled(x, y, global_step=0), eager(x, y, global_step=0), rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-6, msg=name)


def test_dcrnn_compiles_once_for_every_global_step(tiny_data, one_thread):
    """Scheduled sampling reads the int global_step: its probability is computed outside the
    graph, so after the probe (steps 0 and 1, as a fresh run) no later step compiles again; at
    a step whose probability is 0 the compiled decoder feeds back its predictions as eager does."""
    model, info = tiny_model("dcrnn", tiny_data, hidden_size=4, num_layers=1, cl_decay_steps=3)
    eager = copy.deepcopy(model)
    x, y = batch(info, size=4)
    torch._dynamo.reset()
    counters.clear()
    compiled, failure = compile_model(model, probe_step(x, y, global_step=0), backend="aot_eager")
    assert failure is None
    graphs = counters["stats"]["unique_graphs"]
    for step in (7, 8, 100, 10**6):
        compiled(x, y, global_step=step).mean().backward()
    assert counters["stats"]["unique_graphs"] == graphs
    torch.testing.assert_close(compiled(x, y, global_step=10**6), eager(x, y, global_step=10**6))


def test_the_probe_leaves_batch_norm_statistics_and_the_random_stream_as_they_were(tiny_data, one_thread):
    """Graph WaveNet has batch norm (running statistics) and dropout (random draws): after the
    probe's two training steps the module's state and the generator are what they were, so a
    compiled resume continues from the checkpoint's statistics; and it compiles in one graph."""
    model, info = tiny_model("gwnet", tiny_data, residual_channels=4, dilation_channels=4, skip_channels=8,
                             end_channels=8, blocks=1)
    x, y = batch(info, size=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    torch._dynamo.reset()
    counters.clear()
    compiled, failure = compile_model(model, probe_step(x, y), backend="aot_eager")
    assert failure is None
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == []
    assert any("num_batches_tracked" in k for k in before)  # there was batch norm state to move
    assert sum(counters["graph_break"].values()) == 0, dict(counters["graph_break"])


@pytest.mark.mpi
@pytest.mark.slow
def test_two_horovod_ranks_train_compiled(tiny_data, tmp_path, cxx):
    """(DDP wrapping the compiled module passed the same test, dist.engine=ddp, on 2026-12-06; left
    out of the suite for its 20 s.)"""
    run_dir = tmp_path / "run"
    done = subprocess.run(mpirun_command(2) + train_command(tiny_data, run_dir, *COMPILED_RUN),
                          capture_output=True, text=True, timeout=400, env=ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert re.search(r"\[rank 0/2 node 0\] INFO pgti.train: model.compile: compiled in .* s \(1 graph\(s\), "
                     r"0 graph break\(s\)\)", log), log
    assert "parameters identical on all 2 ranks" in log, log
    newest = sorted((run_dir / "checkpoints").glob("step-*.pt"))[-1]
    state = torch.load(newest, map_location="cpu", weights_only=False)
    assert not [k for k in state["model"] if k.startswith("_orig_mod")]  # the bare module's names


@pytest.mark.mpi
@pytest.mark.slow
def test_a_rank_without_a_compiler_makes_every_rank_train_eager(tiny_data, tmp_path, cxx):
    """Rank 0 has no C++ compiler (and an empty inductor cache), rank 1 compiles: both train
    eager, and the job says so in one warning, with no traceback."""
    run_dir = tmp_path / "run"
    command = train_command(tiny_data, run_dir, *COMPILED_RUN)
    no_compiler = ["env", "CXX=/nonexistent/g++", f"TORCHINDUCTOR_CACHE_DIR={tmp_path / 'empty-cache'}"]
    launch = mpirun_command(1) + no_compiler + command + [":", "-np", "1"] + command
    done = subprocess.run(launch, capture_output=True, text=True, timeout=400, env=ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    warnings = [line for line in log.splitlines() if "model.compile" in line and "WARNING" in line]
    assert len(warnings) == 1, log
    assert "failed on rank(s) 0 of 2" in warnings[0] and "C++ compiler" in warnings[0], warnings
    assert "compiled in" not in log and "parameters identical on all 2 ranks" in log, log
    assert "Traceback" not in done.stdout + done.stderr


def test_bench_model_times_the_compiled_step(tiny_data, tmp_path, pgti_cli, one_thread, cxx):
    out_json = tmp_path / "model.json"
    status, out, err = pgti_cli("bench", "model", "--model", "a3tgcn", "--data", tiny_data, "--batch-size", "32",
                                "--set", "hidden_size=8", "--input-steps", STEPS, "--output-steps", STEPS, "--steps", "1",
                                "--no-memory", "--compile",
                                "--json", out_json)
    assert status == 0, err
    result = json.loads(out_json.read_text())
    assert result["compile"]["compiled"] and result["compile"]["graph_breaks"] == 0, result["compile"]
    assert "(A3TGCN, compiled)" in out and result["pgti"]["bound_fraction"] > 0
