"""Pointwise pieces of the models' hot paths.

`tanh`: on CPU computed as `2 sigmoid(2x) - 1`.

torch's CPU `tanh` kernel (torch 2.13, AVX-512 build) is ~6x slower than its `sigmoid`: on a
`[20800, 64]` float32 tensor, 2 threads, 1.8 ms against 0.28 ms (`2 sigmoid(2x) - 1`, four
in-place passes: 0.45 ms). The GRU candidates and Graph WaveNet's gates call it on every
step, and in an A3T-GCN step it was ~6% of the time. The identity costs accuracy only in the
last bits of its absolute value: the largest absolute error against a float64 tanh over
[-20, 20] is 1.8e-7 (torch's tanh: 3.1e-8). Near 0 the relative error grows (tanh(1e-8) is 0
here): fine for a GRU candidate or a gate, whose values are summed with others of order 1.
The backward is torch's own `tanh_backward` on the saved output, as for `torch.tanh`.
Elsewhere (CUDA) torch's tanh is used as is.

`gru_gates`: a GRU's reset and update gates and `r . h` in one autograd node, from one
`[..., 2U]` pre-activation (without `split`'s concatenating backward) or from two.
`gru_update`: the new state from the candidate, the state and the update gate.

`_GRUGates` is once-differentiable and runs in float32 under CUDA autocast (`train.bf16`).
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
    """`torch.tanh(x)` to an absolute error of 1.8e-7, faster on CPU (see the module docstring)."""
    if x.device.type == "cpu":
        return _TanhFromSigmoid.apply(x)
    return torch.tanh(x)


class _GRUGates(torch.autograd.Function):
    """`r, u = sigmoid(pre_r), sigmoid(pre_u)`, returning `(u, r . h)`, with one hand-written
    backward for all of it. With one `[R, 2U]` input (`pre_u` None) the backward writes the two
    halves of its gradient in place, where autograd's `split` would concatenate them (a strided
    copy)."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, pre_r: torch.Tensor, pre_u: torch.Tensor | None, h: torch.Tensor):
        units = h.shape[-1]
        ctx.shapes = (pre_r.shape, None if pre_u is None else pre_u.shape)
        if pre_u is None:
            pre = pre_r.reshape(-1, 2 * units)
            pre_r, pre_u = pre[:, :units], pre[:, units:]
        reset, update = torch.sigmoid(pre_r).reshape(h.shape), torch.sigmoid(pre_u).reshape(h.shape)
        ctx.save_for_backward(reset, update, h)
        return update, reset * h

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_update: torch.Tensor, grad_reset_h: torch.Tensor):
        reset, update, h = ctx.saved_tensors
        grad_reset = grad_reset_h * h
        shape, shape_u = ctx.shapes
        if shape_u is not None:
            return (torch.ops.aten.sigmoid_backward(grad_reset, reset).reshape(shape),
                    torch.ops.aten.sigmoid_backward(grad_update, update).reshape(shape_u), grad_reset_h * reset)
        units = h.shape[-1]
        grad_pre = torch.empty(reset.numel() // units, 2 * units, dtype=reset.dtype, device=reset.device)
        torch.ops.aten.sigmoid_backward.grad_input(
            grad_reset.reshape(-1, units), reset.reshape(-1, units), grad_input=grad_pre[:, :units])
        torch.ops.aten.sigmoid_backward.grad_input(
            grad_update.reshape(-1, units), update.reshape(-1, units), grad_input=grad_pre[:, units:])
        return grad_pre.view(shape), None, grad_reset_h * reset


def gru_gates(pre: torch.Tensor, h: torch.Tensor, pre_update: torch.Tensor | None = None):
    """A graph GRU's gates -> `(u, r . h)`, both shaped like `h [N, B, U]`: the same values as
    `sigmoid(pre).split(U)` for one `pre [..., 2U]` (columns r then u), or as
    `sigmoid(pre), sigmoid(pre_update)` for two pre-activations shaped like h (or `[N*B, U]`)."""
    return _GRUGates.apply(pre, pre_update, h)


def gru_update(candidate: torch.Tensor, h: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """A GRU's new state `u . h + (1 - u) . c`, in h's dtype: under autocast (`train.bf16`) the
    candidate and the gate may come out of their GEMMs in bfloat16, and `lerp` does not cast."""
    return torch.lerp(candidate.to(h.dtype), h, update.to(h.dtype))
