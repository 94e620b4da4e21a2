"""Masked forecasting metrics in original units, per horizon step, from sums and counts.

A reading equal to the dataset's `missing_value` (0.0 for PeMS) is not scored, as in DCRNN's
`masked_mae/rmse/mape`. Metrics are kept as float64 sums over the whole split (not averages of
batch averages), so summing the vectors of all ranks (an allreduce) gives exactly the metrics
of a single-process evaluation:

    MAE_h  = sum |pred - y| / count      RMSE_h = sqrt(sum (pred - y)^2 / count)
    MAPE_h = sum |pred - y| / |y| / count   (in %)
for each horizon step h (1-based: step 3 = 15 min at 5-minute data).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from pgti.errors import UserError

REPORT_STEPS = (3, 6, 12)  # 15 / 30 / 60 minutes at 5-minute data, as in the literature


def masked_mae_loss(pred: torch.Tensor, target: torch.Tensor, missing_value: float = 0.0) -> torch.Tensor:
    """DCRNN's training loss: mean |pred - target| over non-missing targets (0 if none)."""
    mask = (target != missing_value).to(pred.dtype)
    count = mask.sum()
    return ((pred - target).abs() * mask).sum() / count.clamp_min(1.0)


def masked_mse_loss(pred: torch.Tensor, target: torch.Tensor, missing_value: float = 0.0) -> torch.Tensor:
    """Mean (pred - target)^2 over non-missing targets (0 if none): A3T-GCN's L2 loss, masked
    like masked_mae_loss (its authors' data had no missing readings to skip)."""
    mask = (target != missing_value).to(pred.dtype)
    count = mask.sum()
    return ((pred - target).square() * mask).sum() / count.clamp_min(1.0)


LOSSES = {"masked_mae": masked_mae_loss, "masked_mse": masked_mse_loss}  # the choices of train.loss


def training_loss(name: str):
    """The loss `train.loss = name` names: `loss(pred, target, missing_value) -> scalar tensor`."""
    try:
        return LOSSES[name]
    except KeyError:
        raise UserError(f"train.loss: unknown loss {name!r}; choose one of: {', '.join(LOSSES)}") from None


_CHUNK_VALUES = 1 << 21  # values per float64 temporary in MetricSums.update (16 MiB)


class MetricSums:
    """Running sums for `pred, target [B, Tout, N, C]`, kept per horizon step."""

    FIELDS = ("abs", "sq", "ape", "count")

    def __init__(self, horizon: int, missing_value: float = 0.0, device="cpu"):
        self.horizon = horizon
        self.missing_value = missing_value
        self.sums = torch.zeros(len(self.FIELDS), horizon, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch, in float64, a few samples at a time: the float64 temporaries of a whole
        evaluation batch (B=256 at full-PeMS scale: ~0.3 GB each, about ten of them) would
        otherwise outweigh the model's own activations."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        if pred.numel() == 0:
            return
        chunk = max(1, _CHUNK_VALUES // pred[0].numel())
        for p, t in zip(pred.split(chunk), target.split(chunk)):
            self._update(p, t)

    def _update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        mask = target != self.missing_value
        err = (pred.double() - target.double()).masked_fill_(~mask, 0.0)
        denom = target.abs().double().masked_fill_(~mask, 1.0)  # abs() first: never the caller's tensor
        dims = [d for d in range(pred.dim()) if d != 1]  # keep the horizon axis
        abs_err = err.abs()
        self.sums[0] += abs_err.sum(dims)
        self.sums[1] += err.square_().sum(dims)
        self.sums[2] += abs_err.div_(denom).sum(dims)
        self.sums[3] += mask.sum(dims).double()

    def to_numpy(self) -> np.ndarray:
        """The flat float64 vector to allreduce."""
        return self.sums.detach().cpu().numpy().reshape(-1).copy()

    @classmethod
    def from_numpy(cls, flat: np.ndarray, horizon: int, missing_value: float = 0.0) -> "MetricSums":
        m = cls(horizon, missing_value)
        m.sums = torch.from_numpy(np.asarray(flat, dtype=np.float64).reshape(len(cls.FIELDS), horizon).copy())
        return m

    def compute(self) -> dict:
        """{'horizon': [{step, mae, rmse, mape}...], 'overall': {...}, 'count': n}."""
        s = self.sums.cpu().numpy()
        abs_, sq, ape, count = s

        def row(a, q, p, c):
            if c == 0:
                return {"mae": math.nan, "rmse": math.nan, "mape": math.nan}
            return {"mae": a / c, "rmse": math.sqrt(q / c), "mape": 100.0 * p / c}

        per_step = [{"step": h + 1, **row(abs_[h], sq[h], ape[h], count[h])} for h in range(self.horizon)]
        overall = row(abs_.sum(), sq.sum(), ape.sum(), count.sum())
        return {"horizon": per_step, "overall": overall, "count": int(count.sum())}


def format_table(metrics: dict, interval_seconds: int = 300, baseline: dict | None = None,
                 title: str = "") -> str:
    """The horizon table users read: MAE / RMSE / MAPE at 3/6/12 steps and overall."""
    rows = [r for r in metrics["horizon"] if r["step"] in REPORT_STEPS or r["step"] == len(metrics["horizon"])]
    seen, picked = set(), []
    for r in rows:
        if r["step"] not in seen:
            seen.add(r["step"])
            picked.append(r)
    head = f"{'horizon':>16} {'MAE':>8} {'RMSE':>8} {'MAPE':>8}"
    if baseline:
        head += f"   {'last-value MAE':>14}"
    lines = ([title] if title else []) + [head]
    base = {r["step"]: r for r in baseline["horizon"]} if baseline else {}

    def line(label, r, b=None):
        text = f"{label:>16} {r['mae']:8.3f} {r['rmse']:8.3f} {r['mape']:7.2f}%"
        if b is not None:
            text += f"   {b['mae']:14.3f}"
        return text

    for r in picked:
        minutes = r["step"] * interval_seconds / 60
        lines.append(line(f"{r['step']} ({minutes:g} min)", r, base.get(r["step"])))
    lines.append(line("overall", metrics["overall"], baseline["overall"] if baseline else None))
    return "\n".join(lines)
