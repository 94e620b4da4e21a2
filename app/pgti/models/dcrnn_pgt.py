"""`dcrnn-pgt`: PGT-I's DCRNN configuration, for apples-to-apples comparisons with PGT-I.

PGT-I (arXiv 2507.11683) trains PyTorch Geometric Temporal's `BatchedDCRNN(C, C, K=3)`: one
DCGRU cell whose hidden size equals the output channels, run over the 12 input steps; the 12
hidden states are the 12-step forecast (no encoder-decoder, no projection). Its diffusion
convolution `DConv` has `weight [2 directions, K, C_in + U, U]` and `bias [U]`, and computes

    H = X W[0,0] + X W[1,0] + sum_{k>=1} T_k(A_f) X W[0,k] + T_k(A_r) X W[1,k] + b

with PGT's supports (`graph.pgt_supports`) and `T_k = 2 A T_{k-1} - X` for k >= 2. We keep the
same parameters under the same names (`conv_x_z`, `conv_x_r`, `conv_x_h`; a state_dict loads
into PGT's BatchedDCRNN and back) and compute the same function, batched as sparse products:
with C_in = C_out = 2 and K = 3 that is 3 x (2*3*4*2 + 2) = 150 parameters.

Shapes: `x [B, T, N, C_in]` -> `[B, T_out, N, C_out]` with `T_out == T` (the hidden states).
"""
from __future__ import annotations

import torch
from torch import nn

from pgti.models.dcgru import GRUWeights, dcgru_step, input_parts
from pgti.models.defaults import TrainingDefaults
from pgti.models.diffusion import Diffusion
from pgti.models.graph import pgt_supports

PAPER = ("PGT-I: Ockerman et al., arXiv 2507.11683 (SC'25), DCRNN configuration of PyTorch Geometric "
         "Temporal's BatchedDCRNN; model after Li et al., ICLR 2018")

TRAINING_DEFAULTS = TrainingDefaults(
    optimizer="adam", learning_rate=1e-3, adam_eps=1e-8, weight_decay=0.0, lr_milestones=(),
    grad_clip_norm=None, batch_size=64, epochs=100, input_steps=12, output_steps=12,
    loss="masked_mae", source="PGT-I single_gpu_testing/pems_bay_main.py (Adam 1e-3, batch 64, 100 epochs)",
)


class PGTDiffusionWeights(nn.Module):
    """The parameters of one PGT `DConv`: `weight [2, K, in, out]`, `bias [out]` (Xavier / zeros)."""

    def __init__(self, in_channels: int, out_channels: int, K: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(2, K, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        nn.init.xavier_uniform_(self.weight)
        nn.init.zeros_(self.bias)

    def term_weights(self) -> list[torch.Tensor]:
        """Per diffusion term `[in, out]`, in `Diffusion`'s order (X, forward k=1.., reverse k=1..).

        PGT has a weight per direction for the order-0 term; both multiply X, so they add up.
        """
        w = self.weight
        k = w.shape[1]
        return [w[0, 0] + w[1, 0]] + [w[0, i] for i in range(1, k)] + [w[1, i] for i in range(1, k)]


class PGTDCRNN(nn.Module):
    """PGT-I's single-cell DCRNN. `forward(x [B, T, N, C_in], y=None, *, global_step=None) -> [B, T, N, C_out]`.

    Args (beyond the common ones): K (3, PGT's filter size: diffusion steps 0..K-1);
    hidden_channels (0 = output_channels): the cell's hidden size. PGT-I runs
    `BatchedDCRNN(C, C)` on speed + time of day, i.e. hidden = input channels = 2 while only
    speed is scored: `hidden_channels = 2` reproduces that (150 parameters with K=3) and the
    forecast is the first `output_channels` of each hidden state.
    y and global_step are ignored (no scheduled sampling in PGT's model).
    """

    def __init__(self, *, num_nodes: int, input_channels: int, output_channels: int,
                 input_steps: int, output_steps: int, edge_index, edge_weight=None, K: int = 3,
                 hidden_channels: int = 0):
        super().__init__()
        if output_steps != input_steps:
            raise ValueError(f"dcrnn-pgt forecasts one step per input step: output_steps must equal "
                             f"input_steps ({input_steps}), got {output_steps}")
        if K < 1:
            raise ValueError(f"K must be >= 1, got {K}")
        hidden = hidden_channels or output_channels
        if hidden < output_channels:
            raise ValueError(f"hidden_channels ({hidden_channels}) must be 0 or >= output_channels ({output_channels}): "
                             "the forecast is read from the hidden state")
        self.num_nodes, self.input_steps, self.output_steps = num_nodes, input_steps, output_steps
        self.input_channels, self.output_channels, self.K = input_channels, output_channels, K
        self.hidden_channels = hidden
        supports = pgt_supports(edge_index, edge_weight, num_nodes)
        self.diffusion = Diffusion(supports, max_step=K - 1, recurrence="pgt")
        in_channels = input_channels + hidden
        self.conv_x_z = PGTDiffusionWeights(in_channels, hidden, K)  # update gate
        self.conv_x_r = PGTDiffusionWeights(in_channels, hidden, K)  # reset gate
        self.conv_x_h = PGTDiffusionWeights(in_channels, hidden, K)  # candidate

    def weights(self) -> GRUWeights:
        cin = self.input_channels
        reset, update, cand = (c.term_weights() for c in (self.conv_x_r, self.conv_x_z, self.conv_x_h))
        return GRUWeights(
            x=[torch.cat([r[:cin], u[:cin], c[:cin]], dim=1) for r, u, c in zip(reset, update, cand)],
            gate_h=[torch.cat([r[cin:], u[cin:]], dim=1) for r, u in zip(reset, update)],
            cand_h=[c[cin:] for c in cand],
            bias=torch.cat([self.conv_x_r.bias, self.conv_x_z.bias, self.conv_x_h.bias]),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                global_step: int | None = None) -> torch.Tensor:
        batch, _, nodes, _ = x.shape
        weights = self.weights()
        h = x.new_zeros(nodes, batch, self.hidden_channels)
        outputs = []
        for x_part in input_parts(self.diffusion, list(x.permute(1, 2, 0, 3).unbind(0)), weights):
            h = dcgru_step(self.diffusion, x_part, h, weights)  # T steps of [N, B, hidden]
            # the forecast is the hidden state, or its first output channels (no slice when they
            # are the same: a slice would reorder the sums of h's gradient in the last bit)
            outputs.append(h if self.hidden_channels == self.output_channels else h[..., :self.output_channels])
        return torch.stack(outputs, dim=1).permute(2, 1, 0, 3)
