"""Masked metrics equal a straightforward numpy computation, and are exactly additive."""
import numpy as np
import pytest
import torch

from pgti.errors import UserError
from pgti.train.metrics import MetricSums, format_table, masked_mae_loss, masked_mse_loss, training_loss


def _numpy_metrics(pred, y):
    out = []
    for h in range(y.shape[1]):
        p, t = pred[:, h].ravel(), y[:, h].ravel()
        m = t != 0
        e = p[m] - t[m]
        out.append((np.abs(e).mean(), np.sqrt((e ** 2).mean()), 100 * np.mean(np.abs(e) / np.abs(t[m]))))
    m = y != 0
    e = pred[m] - y[m]
    return out, (np.abs(e).mean(), np.sqrt((e ** 2).mean()), 100 * np.mean(np.abs(e) / np.abs(y[m])))


def test_metrics_match_numpy_and_are_additive():
    rng = np.random.default_rng(0)
    y = rng.uniform(10, 70, (9, 12, 5, 1)).astype(np.float32)
    y[rng.random(y.shape) < 0.15] = 0.0  # missing readings are not scored
    pred = (y + rng.normal(0, 3, y.shape)).astype(np.float32)
    whole = MetricSums(12)
    whole.update(torch.from_numpy(pred), torch.from_numpy(y))
    parts = [MetricSums(12), MetricSums(12)]
    parts[0].update(torch.from_numpy(pred[:4]), torch.from_numpy(y[:4]))
    parts[1].update(torch.from_numpy(pred[4:]), torch.from_numpy(y[4:]))
    summed = MetricSums.from_numpy(parts[0].to_numpy() + parts[1].to_numpy(), 12)
    per_step, overall = _numpy_metrics(pred.astype(np.float64), y.astype(np.float64))
    for metrics in (whole.compute(), summed.compute()):
        for h, (mae, rmse, mape) in enumerate(per_step):
            row = metrics["horizon"][h]
            assert np.isclose(row["mae"], mae, rtol=1e-6) and np.isclose(row["rmse"], rmse, rtol=1e-6)
            assert np.isclose(row["mape"], mape, rtol=1e-6)
        assert np.allclose([metrics["overall"][k] for k in ("mae", "rmse", "mape")], overall, rtol=1e-6)
        assert metrics["count"] == int((y != 0).sum())
    table = format_table(whole.compute(), 300)
    assert "3 (15 min)" in table and "12 (60 min)" in table and "overall" in table


def test_masked_mae_loss_ignores_missing():
    y = torch.tensor([[1.0, 0.0, 3.0]])
    pred = torch.tensor([[2.0, 100.0, 1.0]])
    assert torch.isclose(masked_mae_loss(pred, y), torch.tensor(1.5))


def test_masked_mse_loss_is_the_mean_square_over_non_missing_targets():
    y = torch.tensor([[1.0, 0.0, 3.0], [0.0, 2.0, -1.0]])
    pred = torch.tensor([[2.0, 100.0, 1.0], [-50.0, 5.0, -1.0]])
    loss = masked_mse_loss(pred, y)
    assert loss.dtype == torch.float32 and loss.item() == (1 + 4 + 9 + 0) / 4
    assert masked_mse_loss(pred.double(), y.double()).dtype == torch.float64
    other = masked_mse_loss(pred, y, missing_value=-1.0)  # zeros scored, -1 skipped
    assert other == torch.tensor((1 + 100 ** 2 + 4 + 50 ** 2 + 9) / 5, dtype=torch.float32)
    assert masked_mse_loss(pred, torch.zeros_like(y)).item() == 0.0  # nothing scored: 0, not NaN
    pred.requires_grad_(True)
    masked_mse_loss(pred, y).backward()
    assert pred.grad[0, 1] == 0 and pred.grad[1, 0] == 0  # missing targets give no gradient


def test_training_loss_by_config_name():
    assert training_loss("masked_mae") is masked_mae_loss and training_loss("masked_mse") is masked_mse_loss
    with pytest.raises(UserError, match="unknown loss 'mse'; choose one of: masked_mae, masked_mse"):
        training_loss("mse")


def test_update_in_chunks_leaves_inputs_alone_and_skips_empty_batches(monkeypatch):
    from pgti.train import metrics

    rng = np.random.default_rng(1)
    y = torch.from_numpy(rng.uniform(-70, 70, (7, 12, 5, 1)))  # float64 targets, negative ones too
    y[0, 0, 0, 0] = 0.0
    pred = y + torch.from_numpy(rng.normal(0, 3, tuple(y.shape)))
    y_before = y.clone()
    whole = MetricSums(12)
    whole.update(pred, y)
    assert torch.equal(y, y_before)  # the caller's targets are not rewritten in place
    monkeypatch.setattr(metrics, "_CHUNK_VALUES", 2 * 12 * 5)  # two samples per chunk: 4 chunks
    chunked = MetricSums(12)
    chunked.update(pred, y)
    chunked.update(pred[:0], y[:0])  # an empty batch adds nothing
    assert torch.allclose(chunked.sums, whole.sums, rtol=1e-12, atol=0)
    assert chunked.compute()["count"] == whole.compute()["count"] == y.numel() - 1
