"""Batched diffusion over graph supports: the terms of DCRNN's diffusion convolution.

For supports `A_1..A_S` and K steps, the terms of a signal `X [N, F]` are, in this order,

    X,  A_1 X, T_2(A_1) X, ..., T_K(A_1) X,  A_2 X, ..., T_K(A_2) X,  ...

with the recurrence of the DCRNN reference implementation, `T_k X = 2 A T_{k-1} X - T_{k-2} X`
(`T_0 X = X`, `T_1 X = A X`), or plain powers `A^k X` (Graph WaveNet). Each support starts
again from `X` (the TensorFlow reference carried the last terms of one support over into the
next one; that is a known bug of the reference code, not of the paper, and we do not
reproduce it).

`F` holds every sample and channel, `F = B * C` (node-major layout `[N, B, C]`), so the whole
batch is diffused with one sparse product per step: no per-sample loop, no edge replication.
All supports advance together: step 1 is one product with the stacked `[A_1; A_2] [S*N, N]`,
later steps one product with the block diagonal `diag(A_1, A_2) [S*N, S*N]` (doubled once at
construction for the recurrences with `2 A T_{k-1}`).
"""
from __future__ import annotations

import torch
from torch import nn

from pgti.models.sparse import SparseMatrix, block_diag, csr_matmul, scaled, stack_rows

RECURRENCES = ("chebyshev", "pgt", "power")


class Diffusion(nn.Module):
    """The diffusion terms of node signals over fixed sparse supports.

    Args:
        supports: `S` sparse `[N, N]` matrices applied as `A @ X`.
        max_step: K, the number of diffusion steps per support (DCRNN's `max_diffusion_step`).
        recurrence: "chebyshev" (`T_k = 2 A T_{k-1} - T_{k-2}`, the DCRNN reference) or "pgt"
            (`T_k = 2 A T_{k-1} - X` for every k >= 2, what PyTorch Geometric Temporal's DConv
            computes; identical to "chebyshev" for K <= 2), or "power" (`T_k = A^k`, plain
            powers, as in Graph WaveNet).

    Holds no parameters and no buffers: the supports follow `.to()` / `.cuda()` / `.double()`
    through `_apply`, but never enter the `state_dict` or DDP's buffer broadcast.
    """

    def __init__(self, supports: list[SparseMatrix], max_step: int, recurrence: str = "chebyshev"):
        super().__init__()
        if recurrence not in RECURRENCES:
            raise ValueError(f"recurrence must be one of {RECURRENCES}, got {recurrence!r}")
        if max_step < 0:
            raise ValueError(f"max_step must be >= 0, got {max_step}")
        self.num_nodes = supports[0].shape[0]
        self.num_supports = len(supports)
        self.max_step = int(max_step)
        self.recurrence = recurrence
        self.first = stack_rows(supports) if max_step >= 1 else None
        # Later steps multiply by diag(A_s), doubled once here for the recurrences' 2 A T_{k-1}.
        scale = 1.0 if recurrence == "power" else 2.0
        self.next = block_diag([scaled(a, scale) for a in supports]) if max_step >= 2 else None

    @property
    def num_terms(self) -> int:
        """M = 1 + S * K."""
        return 1 + self.num_supports * self.max_step

    def _apply(self, fn, recurse=True):
        self.first = self.first.apply(fn) if self.first is not None else None
        self.next = self.next.apply(fn) if self.next is not None else None
        return super()._apply(fn, recurse)

    def extra_repr(self) -> str:
        return (f"num_nodes={self.num_nodes}, supports={self.num_supports}, max_step={self.max_step}, "
                f"recurrence={self.recurrence}")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Terms of `x [N, *cols]` (e.g. `[N, B, C]`): a list of M tensors `[N * prod(cols)/C, C]`.

        Every term is returned as a 2-D `[R, C]` view (R = N * B for `[N, B, C]`), ready for a
        matmul with a `[C, O]` weight.
        """
        n, channels = x.shape[0], x.shape[-1]
        x0 = x.reshape(n, -1)
        terms_2d = [x0]
        if self.max_step >= 1:
            s, f = self.num_supports, x0.shape[1]
            steps = [self.first.matmul(x0)]  # [S*N, F]: A_s X for every s
            for k in range(2, self.max_step + 1):
                if self.recurrence == "power":
                    steps.append(self.next.matmul(steps[-1]))
                    continue
                before = x0 if k == 2 or self.recurrence == "pgt" else steps[-2].view(s, n, f)
                step = self.next.matmul(steps[-1]).view(s, n, f) - before  # x0 broadcasts over supports
                steps.append(step.view(s * n, f))
            per_step = [st.view(s, n, f).unbind(0) for st in steps]  # unbind: one cheap backward
            for support in range(s):
                terms_2d += [blocks[support] for blocks in per_step]
        return [t.reshape(-1, channels) for t in terms_2d]

    def project(self, x: torch.Tensor, weights: list[torch.Tensor], bias: torch.Tensor | None = None) -> torch.Tensor:
        """`sum_m T_m(x) @ weights[m] (+ bias)`: `[N, *cols, C]` x M `[C, O]` -> `[N * prod(cols), O]`.

        The same function as `project(self(x), weights, bias)` (pgti.models.dcgru), computed by
        `_DiffuseProject` for up to two diffusion steps (every model here): no term is copied,
        the Chebyshev subtraction `T_2 = 2 A T_1 - X` is folded into X's weight
        (`X W_0 + T_2 W_2 = X (W_0 - W_2) + (2 A T_1) W_2`), and the backward accumulates every
        term's gradient into the sparse products' outputs inside the GEMMs (`addmm_`). Under
        autocast, or for more steps, the terms are built and projected one by one.
        """
        from pgti.models.dcgru import project

        if self.max_step > 2 or torch.is_autocast_enabled(x.device.type):
            return project(self(x), weights, bias)
        if self.max_step == 2 and self.recurrence != "power":  # T_2 = (2 A T_1) - X per support
            last = [1 + s * self.max_step + 1 for s in range(self.num_supports)]
            weights = [weights[0] - sum(weights[m] for m in last)] + list(weights[1:])
        n, channels = x.shape[0], x.shape[-1]
        return _DiffuseProject.apply(self, x.reshape(n, -1), channels, bias, *weights)


class _DiffuseProject(torch.autograd.Function):
    """`X0 W_0 + sum_s Y_s W_s1 + sum_s P_s W_s2 (+ b)` with `Y = [A_1; A_2] X0` and
    `P = diag(2A_1, 2A_2) Y` (K = 2; K = 1: no P; "power": diag(A_s)), every term a contiguous
    `[R, C]` view of X0, Y or P (R = N * F / C). Backward: the terms' gradients are GEMMs written
    straight into the buffers the transposed sparse products then read, accumulated in place."""

    @staticmethod
    def forward(ctx, diffusion: "Diffusion", x0: torch.Tensor, channels: int, bias, *weights):
        n, s, k = x0.shape[0], diffusion.num_supports, diffusion.max_step
        rows = x0.numel() // channels
        x0 = x0.contiguous()
        y = csr_matmul(diffusion.first.csr(), x0) if k >= 1 else None  # [S*N, F]
        p = csr_matmul(diffusion.next.csr(), y) if k >= 2 else None
        terms = _terms(x0, y, p, n, s, k, rows, channels)
        out = torch.addmm(bias, terms[0], weights[0]) if bias is not None else terms[0] @ weights[0]
        for term, weight in zip(terms[1:], weights[1:]):
            out.addmm_(term, weight)
        ctx.diffusion, ctx.shape = diffusion, (n, s, k, rows, channels)
        ctx.save_for_backward(x0, y, p, *weights)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x0, y, p, *weights = ctx.saved_tensors
        n, s, k, rows, channels = ctx.shape
        diffusion, grad = ctx.diffusion, grad.contiguous()
        terms = _terms(x0, y, p, n, s, k, rows, channels)
        grad_weights = [term.t() @ grad if ctx.needs_input_grad[4 + m] else None for m, term in enumerate(terms)]
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_y = None
            if k >= 2:  # dL/dP written by the GEMMs, then carried back through diag(...)^T
                grad_p = torch.empty_like(p)
                for m, view in zip(range(2, 1 + s * k, k), _views(grad_p, n, s, rows, channels)):
                    torch.mm(grad, weights[m].t(), out=view)
                grad_y = csr_matmul(diffusion.next.csr_transposed(), grad_p)
            if k >= 1:  # + dL/dY of its own terms, accumulated in place
                grad_y = torch.zeros_like(y) if grad_y is None else grad_y
                for m, view in zip(range(1, 1 + s * k, k), _views(grad_y, n, s, rows, channels)):
                    view.addmm_(grad, weights[m].t())
                grad_x = csr_matmul(diffusion.first.csr_transposed(), grad_y)
                grad_x.view(rows, channels).addmm_(grad, weights[0].t())
            else:
                grad_x = grad @ weights[0].t()
            grad_x = grad_x.view(x0.shape)
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return (None, grad_x, None, grad_bias, *grad_weights)


def _views(buffer: torch.Tensor, n: int, s: int, rows: int, channels: int) -> list[torch.Tensor]:
    """The S contiguous `[R, C]` blocks of a `[S*N, F]` buffer, one per support."""
    return [block.view(rows, channels) for block in buffer.view(s, -1).unbind(0)]


def _terms(x0, y, p, n, s, k, rows, channels) -> list[torch.Tensor]:
    """The M term views in `Diffusion`'s order: X, then per support its steps 1..K."""
    terms = [x0.view(rows, channels)]
    ys = _views(y, n, s, rows, channels) if k >= 1 else []
    ps = _views(p, n, s, rows, channels) if k >= 2 else []
    for support in range(s if k >= 1 else 0):
        terms += [ys[support]] + ([ps[support]] if k >= 2 else [])
    return terms
