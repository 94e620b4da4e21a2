"""`pgti bench model` (app/pgti/bench/model.py) on a small dataset file."""
import json

import pytest


def test_bench_model_checks_outputs_and_writes_json(make_dataset, pgti_cli, tmp_path):
    path = make_dataset(T=120, N=9, C=1)
    out_json = tmp_path / "bench.json"
    status, out, err = pgti_cli("bench", "model", "--model", "dcrnn-pgt", "--data", path, "--batch-size", "4",
                                "--steps", "2", "--json", out_json)
    assert status == 0, err
    result = json.loads(out_json.read_text())
    assert result["outputs_agree"] and result["max_abs_output_difference"] <= 1e-4
    assert result["max_abs_output_difference_float32"] <= 1e-3
    assert result["speedup"] > 0 and len(result["pgti"]["seconds"]) == 2
    assert result["pgti"]["parameters"] == result["pgt_i"]["parameters"] == 150
    assert result["pgti"]["peak_bytes"] > 0 and result["pgt_i"]["peak_bytes"] > 0
    assert "speedup" in out
    bound = result["pgti"]
    assert bound["dense_flop"] > 0 and bound["sparse_flop"] > 0 and bound["sparse_bytes"] > 0
    assert 0 < bound["bound_fraction"] and bound["gemm_gflops_model_shape"] > 0 and len(bound["profile_top"]) == 5
    assert "bound_fraction" in out and "profile " in out


def test_work_counts_dense_and_sparse_products_exactly():
    """One [R, K] @ [K, N] with its two backward GEMMs, and one CSR product forward only."""
    import torch

    from pgti.models.roofline import count_work
    from pgti.models.sparse import SparseMatrix

    r, k, n = 30, 7, 5
    x = torch.randn(r, k, requires_grad=True)
    w = torch.randn(k, n, requires_grad=True)
    a = SparseMatrix.from_coo([0, 1, 2, 2], [1, 0, 0, 2], [1.0, 2.0, 3.0, 4.0], (3, 3))
    d = torch.randn(3, 11)

    def step():
        (x @ w).sum().backward()
        with torch.no_grad():
            a.matmul(d)
            torch.zeros(r, n).addmm_(x, w)  # in place: torch's FlopCounterMode alone misses it

    work = count_work(step)
    assert work["dense_flop"] == 4 * 2 * r * k * n  # forward, dx, dw, addmm_
    assert work["sparse_flop"] == 2 * 4 * 11  # 2 x nnz x width
    assert {(s["m"], s["k"], s["n"]) for s in work["gemm_shapes"]} == {(r, k, n), (r, n, k), (k, r, n)}


@pytest.mark.parametrize("model, extra", [
    ("dcrnn", ["--set", "hidden_size=4"]),
    ("gwnet", ["--set", "residual_channels=8", "--set", "skip_channels=16", "--set", "end_channels=16"]),
])
def test_bench_model_other_models(make_dataset, pgti_cli, model, extra):
    path = make_dataset(T=120, N=9, C=1)
    status, out, err = pgti_cli("bench", "model", "--model", model, "--data", path, "--batch-size", "3",
                                "--steps", "1", "--input-steps", "4", "--output-steps", "3", "--no-memory", *extra)
    assert status == 0, err
    assert ("speedup" in out) == (model == "dcrnn")
