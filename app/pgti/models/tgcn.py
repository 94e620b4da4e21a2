"""The T-GCN cell: a GRU whose gates are graph convolutions (Zhao et al., IEEE T-ITS 2020).

    r, u = sigmoid(A [X, H] W_ru + b_ru)
    C    = tanh(A [X, r . H] W_C + b_C)
    H'   = u . H + (1 - u) . C

with `A = D~^-1/2 (W + I) D~^-1/2` (`graph.gcn_support`). This is the authors' implementation
(T-GCN TensorFlow and PyTorch code, which A3T-GCN reuses): the graph convolution is applied to
the concatenation of input and state, gate biases start at 1, weights Xavier-uniform. Since
`A [X, H] W = (A X) W_x + (A H) W_h`, the input is convolved once for a whole sequence
(`input_part`) and only the state inside the recurrence. Node-major layout `[N, B, C]`: each
graph convolution is one sparse product `[N, N] x [N, B*C]` for the whole batch.
"""
from __future__ import annotations

import torch

from pgti.models.dcgru import GRUParameters
from pgti.models.sparse import SparseMatrix


def graph_conv(support: SparseMatrix, x: torch.Tensor) -> torch.Tensor:
    """`A @ X` over the node dimension: `x [N, *L, C]` -> `[N * prod(L), C]`."""
    return support.matmul(x.reshape(x.shape[0], -1)).view(-1, x.shape[-1])


class TGCNCell(GRUParameters):
    """T-GCN cell with `gate_weight [C_in + U, 2U]` (columns r, u) and `candidate_weight [C_in + U, U]`."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__(input_size + hidden_size, hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size

    def input_part(self, support: SparseMatrix, x: torch.Tensor) -> torch.Tensor:
        """`x [N, *L, C_in]` -> `[N, *L, 3U]`: `(A X) [W_x_ru | W_x_C] + [b_ru | b_C]`."""
        cin = self.input_size
        weight = torch.cat([self.gate_weight[:cin], self.candidate_weight[:cin]], dim=1)
        bias = torch.cat([self.gate_bias, self.candidate_bias])
        out = torch.addmm(bias, graph_conv(support, x), weight)
        return out.view(*x.shape[:-1], out.shape[-1])

    def step(self, support: SparseMatrix, x_part: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """`x_part [N, B, 3U]` (from `input_part`), `h [N, B, U]` -> new `h [N, B, U]`."""
        cin, units = self.input_size, self.hidden_size
        x_gates, x_candidate = x_part.split([2 * units, units], dim=-1)
        gates = (graph_conv(support, h) @ self.gate_weight[cin:]).view(*h.shape[:-1], 2 * units)
        reset, update = torch.sigmoid(gates + x_gates).split(units, dim=-1)
        candidate = (graph_conv(support, reset * h) @ self.candidate_weight[cin:]).view_as(h)
        candidate = torch.tanh(candidate + x_candidate)
        return torch.lerp(candidate, h, update)  # u . h + (1 - u) . c

    def forward(self, support: SparseMatrix, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step from scratch: `x [N, B, C_in]`, `h [N, B, U]` -> `[N, B, U]`."""
        return self.step(support, self.input_part(support, x), h)
