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

from pgti.models.sparse import SparseMatrix, block_diag, scaled, stack_rows

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
