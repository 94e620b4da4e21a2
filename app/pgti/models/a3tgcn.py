"""A3T-GCN: Attention Temporal Graph Convolutional Network (Zhu, Song, Zhao, Li; 2020).

A T-GCN cell reads the input periods; an attention over those periods (paper eq. 7-9) weighs
their hidden states into a context, and a fully connected layer maps the context to the
forecast:

    e_t     = w2 (H_t w1 + b1) + b2        H_t [N, U]; w1 [U -> 1] per node, w2 [N -> 1]
    alpha_t = softmax_t(e_t)               one weight per input period and sample
    C       = sum_t alpha_t H_t            [N, U]
    Y       = C W_out + b_out              [N, T_out * C_out] per node

(the two-layer scoring of the paper, as laid out in the authors' code: w1 reduces each node's
state, w2 mixes the nodes). The whole batch runs at once: sparse products over `[N, B*C]`.

Shapes: `x [B, T_in, N, C_in]` -> `[B, T_out, N, C_out]`. y / global_step are ignored.
"""
from __future__ import annotations

import torch
from torch import nn

from pgti.models.defaults import TrainingDefaults
from pgti.models.graph import gcn_support
from pgti.models.sparse import SupportSet
from pgti.models.tgcn import TGCNCell

PAPER = ("Zhu, Song, Zhao, Li. A3T-GCN: Attention Temporal Graph Convolutional Network for Traffic "
         "Forecasting. arXiv 2006.11583 (2020); ISPRS Int. J. Geo-Inf. 10(7):485 (2021)")

# The authors' L2 loss is unmasked: their Los-loop data had its missing readings filled by
# linear interpolation beforehand (as in T-GCN), leaving nothing to skip. pgti's datasets keep
# missing readings as missing_value (0.0 in PeMS), where an unmasked loss would train towards
# 0; masked MSE equals their loss on complete data and skips the missing readings elsewhere.
TRAINING_DEFAULTS = TrainingDefaults(
    optimizer="adam", learning_rate=1e-3, weight_decay=0.0, grad_clip_norm=None, batch_size=64,
    epochs=100, input_steps=12, output_steps=12, loss="masked_mse",
    source=("A3T-GCN paper / authors' code: Adam 1e-3, batch 64, 64 GRU units (Los-loop), L2 loss (masked here). "
            "The paper's 5000 epochs and L2 penalty 0.0015 on a summed loss are for its small "
            "datasets; 100 epochs and no penalty here"),
)


class A3TGCN(nn.Module):
    """A3T-GCN. `forward(x [B, T_in, N, C_in], y=None, *, global_step=None) -> [B, T_out, N, C_out]`.

    Args (beyond the common ones): hidden_size (GRU units, 64).
    """

    def __init__(self, *, num_nodes: int, input_channels: int, output_channels: int,
                 input_steps: int, output_steps: int, edge_index, edge_weight=None, hidden_size: int = 64):
        super().__init__()
        self.num_nodes, self.input_steps, self.output_steps = num_nodes, input_steps, output_steps
        self.input_channels, self.output_channels, self.hidden_size = input_channels, output_channels, hidden_size
        self.support = SupportSet([gcn_support(edge_index, edge_weight, num_nodes)])
        self.cell = TGCNCell(input_channels, hidden_size)
        self.attention_state = nn.Linear(hidden_size, 1)  # w1, b1
        self.attention_nodes = nn.Linear(num_nodes, 1)  # w2, b2
        self.output = nn.Linear(hidden_size, output_steps * output_channels)

    def attention(self, states: list[torch.Tensor]) -> torch.Tensor:
        """Weights of the input periods: T states `[N, B, U]` -> `alpha [B, T]` (sums to 1 over T).

        `e_t = w2 (H_t w1 + b1) + b2` is linear in H_t, so it is summed over the nodes first,
        `(w2 H_t) w1`, with one matrix-vector product per step: `H_t w1` as a `[N*B, U] x [U, 1]`
        GEMM had a K = 1 GEMM as its backward (2 ms per step, a broadcast product's work)."""
        nodes, batch, units = states[0].shape
        w1, w2 = self.attention_state.weight.view(units), self.attention_nodes.weight.view(nodes)
        node_sums = torch.stack([torch.mv(h.view(nodes, batch * units).t(), w2) for h in states])  # [T, B*U]
        scores = torch.mv(node_sums.view(-1, units), w1).view(len(states), batch).t()  # [B, T]
        scores = scores + (self.attention_state.bias * w2.sum() + self.attention_nodes.bias)
        return torch.softmax(scores, dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                global_step: int | None = None) -> torch.Tensor:
        batch, steps, nodes, _ = x.shape
        support = self.support[0]
        sequence = x.permute(1, 2, 0, 3)  # [T, N, B, C_in]
        h = x.new_zeros(nodes, batch, self.hidden_size)
        states = []
        for t in range(steps):
            h = self.cell(support, sequence[t], h)
            states.append(h)
        # The states stay one tensor per step: stacking them (64 MB here) cost a copy forward, a
        # permuted copy for the einsum's bmm and a summed gradient backward (~50 ms of a 0.4 s step)
        alpha = self.attention(states)
        context = states[0] * alpha[:, :1]  # sum_t alpha_t H_t, alpha [B, 1] broadcast over [N, B, U]
        for t in range(1, steps):
            context = torch.addcmul(context, states[t], alpha[:, t:t + 1])
        out = self.output(context).view(nodes, batch, self.output_steps, self.output_channels)
        return out.permute(1, 2, 0, 3)
