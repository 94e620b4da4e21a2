"""`pgti bench epoch` (app/pgti/bench/epoch.py): both pipelines train on the same thing."""
from __future__ import annotations

import json

import pytest
import torch

from pgti.bench import epoch

SMALL = {"dcrnn-pgt": {}, "dcrnn": {"hidden_size": 16, "num_layers": 1}}  # fast: same code paths


@pytest.mark.parametrize("model", ["dcrnn-pgt", "dcrnn"])
@pytest.mark.parametrize("channels", [1, 2])
def test_first_step_loss_is_the_same_in_both_pipelines(make_dataset, one_thread, model, channels):
    data = make_dataset(T=400, N=6, C=channels, missing=0.1)
    pgti, pgt, setup = epoch.build_pipelines(data, model, batch_size=8, seed=3, **SMALL[model])
    assert type(pgt.model).__name__ == epoch.REFERENCES[model]
    for a, b in zip(pgti.model.state_dict().values(), pgt.model.state_dict().values()):
        assert torch.equal(a, b)  # same initial weights
    # Same windows, and the same readings scored: PGT-I's standardized float64 targets come back
    # to exactly pgti's raw float32 ones, missing readings (0) included.
    x_pgti, _, y_pgti = pgti.prepare(next(pgti.batches))
    x_pgt, y_model_pgt, y_pgt = pgt.prepare(next(pgt.batches))
    assert torch.allclose(x_pgti, x_pgt, atol=1e-5)
    assert torch.equal(y_pgti, y_pgt) and bool((y_pgti == 0).any())
    pgti, pgt, _ = epoch.build_pipelines(data, model, batch_size=8, seed=3, **SMALL[model])
    first = [pipeline.step(0, timed=True) for pipeline in (pgti, pgt)]
    assert first[0] == pytest.approx(first[1], abs=1e-4)
    assert first[0] > 0


def test_pgti_pipeline_trains_with_pgti_trains_step(make_dataset, one_thread, monkeypatch):
    """The benchmark's pgti pipeline calls `pgti.train.step.train_step`, the function the
    training loop calls, once per step (no copy of the step in the benchmark)."""
    from pgti.train import loop, step

    calls = []
    real = step.train_step

    def counting(parts, x, y, global_step):
        calls.append(global_step)
        return real(parts, x, y, global_step)

    monkeypatch.setattr(step, "train_step", counting)
    assert loop.train_step is real  # the loop's step is this very function
    pgti, pgt, _ = epoch.build_pipelines(make_dataset(T=300, N=5, C=1), "dcrnn-pgt", batch_size=8, seed=3)
    for k in range(3):
        pgti.step(k, timed=False)
        pgt.step(k, timed=False)
    assert calls == [0, 1, 2]
    assert pgti.parts.optimizer is not None and type(pgti.parts.engine).__name__ == "Engine"


def test_measure_reports_both_pipelines_and_the_ratio(make_dataset, tmp_path, pgti_cli):
    data = make_dataset(T=300, N=5, C=1)
    out = tmp_path / "epoch.json"
    status, stdout, stderr = pgti_cli("bench", "epoch", "--data", data, "--model", "dcrnn-pgt", "--batch-size", 8,
                                      "--steps", 2, "--warmup", 0, "--threads", 1, "--json", out)
    assert status == 0, stderr
    assert "speedup" in stdout and "epoch time = median measured time per step x steps per epoch" in stdout
    result = json.loads(out.read_text())
    assert set(result["pipelines"]) == {"pgti", "pgt_i"}
    for p in result["pipelines"].values():
        assert len(p["step_seconds"]) == 2 and p["samples_per_s"] > 0 and len(p["losses"]) == 2
        assert p["epoch_time_s"] == pytest.approx(p["median_step_s"] * result["steps_per_epoch"])
    assert result["speedup"] == pytest.approx(result["pipelines"]["pgt_i"]["median_step_s"]
                                              / result["pipelines"]["pgti"]["median_step_s"])
    assert result["first_step_loss_difference"] <= 1e-4
    assert result["parameters"] == 150  # PGT-I's configuration: C_in = C_out = 2 (speed, time of day), K = 3


def test_bad_input_is_a_usage_error(pgti_cli, tmp_path):
    status, _, stderr = pgti_cli("bench", "epoch", "--data", tmp_path / "none.h5")
    assert status == 2 and "no such file" in stderr


def test_cuda_is_refused_cleanly_without_a_gpu(make_dataset, pgti_cli):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    status, _, stderr = pgti_cli("bench", "epoch", "--data", make_dataset(), "--device", "cuda")
    assert status == 2 and "no CUDA" in stderr


@pytest.mark.gpu
def test_gpu_index_batching_pipeline_matches_on_cuda(make_dataset):
    data = make_dataset(T=300, N=5, C=1)
    result = epoch.measure(data, "dcrnn-pgt", batch_size=8, steps=1, warmup=0, device="cuda")
    assert result["device"] == "cuda" and result["first_step_loss_difference"] <= 1e-4
