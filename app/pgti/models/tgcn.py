"""The T-GCN cell: a GRU whose gates are graph convolutions (Zhao et al., IEEE T-ITS 2020).

    r, u = sigmoid(A [X, H] W_ru + b_ru)
    C    = tanh(A [X, r . H] W_C + b_C)
    H'   = u . H + (1 - u) . C

with `A = D~^-1/2 (W + I) D~^-1/2` (`graph.gcn_support`). This is the authors' implementation
(T-GCN TensorFlow and PyTorch code, which A3T-GCN reuses): the graph convolution is applied to
the concatenation of input and state, gate biases start at 1, weights Xavier-uniform.
Node-major layout `[N, B, C]`: each graph convolution is one sparse product
`[N, N] x [N, B*(C_in+U)]` for the whole batch.

Laid out for the backward pass (measured on the pems-bay preset, B = 64, 2 threads: an A3T-GCN
step 0.51 -> 0.39 s, profiled with torch.profiler):
- the input is convolved with the state every step, `A [X, H]`, as the authors do, rather than
  convolved and projected once for the whole sequence: that hoisted projection, with only
  C_in = 2 input columns, left a `[T*N*B, 3U]` tensor (192 MB here) whose weight gradient was a
  `[2, T*N*B] x [T*N*B, 3U]` GEMM that BLAS runs at ~4 GFLOP/s (50 ms), and whose per-step
  slices were strided, so the backward's stack copied it again (47 ms). The two extra columns of
  the sparse product and the GEMM cost nothing measurable;
- r and u come from two GEMMs over the same `A [X, H]`, each output contiguous, and
  `gru_gates` computes both gates and `r . H` with one hand-written backward: one GEMM split in
  two had `split`'s backward concatenate the two gradients along the feature dimension, a
  strided copy at ~5 GB/s (3 ms per step); reading the halves in place instead was ~10% slower
  than two GEMMs here (interleaved runs).
"""
from __future__ import annotations

import torch

from pgti.models.activations import gru_gates, gru_update, tanh
from pgti.models.dcgru import GRUParameters
from pgti.models.sparse import SparseMatrix


def graph_conv(support: SparseMatrix, x: torch.Tensor) -> torch.Tensor:
    """`A @ X` over the node dimension: `x [N, *L, C]` -> `[N * prod(L), C]`."""
    return support.matmul(x.reshape(x.shape[0], -1)).view(-1, x.shape[-1])


class TGCNCell(GRUParameters):
    """T-GCN cell with `gate_weight [C_in + U, 2U]` (columns r, u) and `candidate_weight [C_in + U, U]`
    (rows: the input's channels, then the state's)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size + hidden_size, hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size

    def forward(self, support: SparseMatrix, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step: `x [N, B, C_in]`, `h [N, B, U]` -> new `h [N, B, U]`."""
        xh = graph_conv(support, torch.cat([x, h], dim=-1))  # [N*B, C_in + U]
        units = self.hidden_size
        update, reset_h = gru_gates(torch.addmm(self.gate_bias[:units], xh, self.gate_weight[:, :units]), h,
                                    torch.addmm(self.gate_bias[units:], xh, self.gate_weight[:, units:]))
        candidate = graph_conv(support, torch.cat([x, reset_h], dim=-1))
        candidate = tanh(torch.addmm(self.candidate_bias, candidate, self.candidate_weight)).view_as(h)
        return gru_update(candidate, h, update)
