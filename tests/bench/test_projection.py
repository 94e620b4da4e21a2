"""The PeMS projection's model (app/pgti/bench/projection.py)."""
from __future__ import annotations

import pytest

from pgti.bench import projection


def _inputs(**extra):
    inputs = {"compute_s_per_window_sensor": {"pgti": 2e-6, "pgt_i": 12e-6}, "pgti_memcpy_efficiency": 0.5,
              "pgt_i_loader_s_per_window": 20e-6, "memcpy_bytes_s": 10e9,
              "engine_overhead_s": {"horovod": 1e-3, "gloo": 2e-3}}
    inputs.update(extra)
    return inputs


def test_projection_follows_its_model_and_reproduces_the_calibration():
    p = projection.project(_inputs())
    a, sizes = p["assumptions"], p["sizes"]
    assert a["gpu_factor"] == pytest.approx(a["gpu_bandwidth_bytes_s"] / 10e9)  # bandwidth ratio by default
    assert sizes["train_windows"] == round(0.7 * (105_120 - 23))
    # 24x the raw array per rank (x also carries the time of day): DDP cannot hold PeMS
    assert sizes["materialized_speed_only_bytes_per_rank"] > 23 * sizes["raw_bytes"]
    assert not p["memory"]["ddp_fits_gpu"] and not p["memory"]["ddp_fits_node"]
    rows = {(r["method"], r["gpus"]): r for r in p["rows"]}
    for w in a["gpus"]:
        for method in projection.METHODS:
            r = rows[(method, w)]
            assert r["epoch_s"] == pytest.approx(r["steps_per_epoch"] * r["step_s"])
            assert 0 < r["efficiency"] <= 1.0 + 1e-12
    # the DDP model is calibrated on PGT-I's headline at 128 GPUs
    assert rows[("ddp", 128)]["epoch_s"] / rows[("pgt_i", 128)]["epoch_s"] == pytest.approx(11.78)
    pgti = rows[("pgti", 128)]
    compute = 2e-6 * 64 * 11_160 / a["gpu_factor"]
    ring = 2 * 127 / 128 * 600 / 25e9 + 2 * 127 * 5e-6
    assert pgti["step_s"] == pytest.approx(compute + p["data_s"]["pgti"] + ring + 1e-3)


def test_ring_allreduce_model():
    assert projection.ring_allreduce_s(1e9, 1, 25e9, 5e-6) == 0.0
    assert projection.ring_allreduce_s(1e9, 2, 25e9, 5e-6) == pytest.approx(1e9 / 25e9 + 2 * 5e-6)
    assert projection.ring_allreduce_s(0, 128, 25e9, 5e-6) == pytest.approx(2 * 127 * 5e-6)


def test_sensitivity_scales_the_gpu_factor():
    rows = projection.sensitivity(_inputs(), {"gpu_factor": 100.0})
    assert [r["gpu_factor"] for r in rows] == [25.0, 100.0, 400.0]
