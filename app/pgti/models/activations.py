"""Pointwise pieces of the models' hot paths.

`tanh`: on CPU computed as `2 sigmoid(2x) - 1`.

torch's CPU `tanh` kernel (torch 2.13, AVX-512 build) is ~6x slower than its `sigmoid`: on a
`[20800, 64]` float32 tensor, 2 threads, 1.8 ms against 0.28 ms (`2 sigmoid(2x) - 1`, four
in-place passes: 0.45 ms). The GRU candidates and Graph WaveNet's gates call it on every
step, and in an A3T-GCN step it was ~6% of the time. The identity costs accuracy only in the
last bits: the largest absolute error against a float64 tanh over [-20, 20] is 1.8e-7 (torch's
tanh: 3.1e-8). The backward is torch's own `tanh_backward` on the saved output, as for
`torch.tanh`. Elsewhere (CUDA) torch's tanh is used as is.

`gru_gates`: a GRU's reset and update gates from one GEMM's output, without the concatenating
backward of `split` (see `_GRUGates`).
"""
from __future__ import annotations

import torch


class _TanhFromSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = torch.mul(x, 2).sigmoid_().mul_(2).sub_(1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """`torch.tanh(x)` to float rounding, faster on CPU (see the module docstring)."""
    if x.device.type == "cpu":
        return _TanhFromSigmoid.apply(x)
    return torch.tanh(x)


class _GRUGates(torch.autograd.Function):
    """`r, u = sigmoid(pre).split(U)`, returning `(u, r . h)`. Each gate is computed straight from
    its half of `pre` into a tensor of its own, and the backward writes both halves of the
    gradient of `pre` in place: autograd's `split` would concatenate them (a strided copy)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, h: torch.Tensor):
        units = h.shape[-1]
        ctx.pre_shape = pre.shape
        pre = pre.view(-1, 2 * units)
        reset, update = torch.sigmoid(pre[:, :units]), torch.sigmoid(pre[:, units:])
        reset, update = reset.view_as(h), update.view_as(h)
        ctx.save_for_backward(reset, update, h)
        return update, reset * h

    @staticmethod
    def backward(ctx, grad_update: torch.Tensor, grad_reset_h: torch.Tensor):
        reset, update, h = ctx.saved_tensors
        units = h.shape[-1]
        grad_pre = torch.empty(reset.numel() // units, 2 * units, dtype=reset.dtype, device=reset.device)
        torch.ops.aten.sigmoid_backward.grad_input(
            (grad_reset_h * h).view(-1, units), reset.view(-1, units), grad_input=grad_pre[:, :units])
        torch.ops.aten.sigmoid_backward.grad_input(
            grad_update.reshape(-1, units), update.view(-1, units), grad_input=grad_pre[:, units:])
        return grad_pre.view(ctx.pre_shape), grad_reset_h * reset


def gru_gates(pre: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A graph GRU's gates: `pre [N*B, 2U]` (pre-activations, columns r then u), `h [N, B, U]` ->
    `(u, r . h)`, both shaped like h. The same values as `sigmoid(pre).split(U)`."""
    return _GRUGates.apply(pre, h)
