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
        """Weights of the input periods: T states `[N, B, U]` -> `alpha [B, T]` (sums to 1 over T)."""
        return _attention_weights(states, self.attention_state.weight, self.attention_nodes.weight)[0]

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
        context = _AttentionContext.apply(self.attention_state.weight, self.attention_nodes.weight,
                                          self.attention_state.bias, self.attention_nodes.bias, *states)
        out = self.output(context).view(nodes, batch, self.output_steps, self.output_channels)
        return out.permute(1, 2, 0, 3)


def _attention_weights(states, w1: torch.Tensor, w2: torch.Tensor):
    """`(alpha [B, T], node sums [T, B, U])` of T states `[N, B, U]`.

    `e_t = w2 (H_t w1 + b1) + b2` is linear in H_t, so it is summed over the nodes first,
    `S_t = w2 H_t`, one matrix-vector product per step, then `e_t = S_t w1`. The biases add the
    same `b1 sum(w2) + b2` to every period, which the softmax over periods cancels."""
    nodes, batch, units = states[0].shape
    w2 = w2.reshape(nodes)
    sums = torch.stack([torch.mv(h.reshape(nodes, batch * units).t(), w2) for h in states]).view(-1, batch, units)
    return torch.softmax(torch.mv(sums.view(-1, units), w1.reshape(units)).view(len(states), batch).t(), dim=1), sums


class _AttentionContext(torch.autograd.Function):
    """`C = sum_t alpha_t H_t` with the attention weights of `_attention_weights`, in one node.

    The states stay one tensor per step (stacking them, 64 MB on pems-bay at B = 64, cost a copy,
    a permuted copy for the einsum's bmm and a summed gradient), and the backward writes each
    state's gradient once, contiguous: `alpha_t dC + w2 (x) dS_t`, where autograd produced the
    outer product transposed and added two broadcast products into it (~30 ms of a 0.33 s step).
    The biases' gradients are exactly zero (the softmax cancels them). Once-differentiable; in
    float32 under CUDA autocast."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(ctx, w1, w2, b1, b2, *states):
        alpha, sums = _attention_weights(states, w1, w2)
        context = states[0] * alpha[:, :1]  # alpha [B, 1] broadcast over [N, B, U]
        for t in range(1, len(states)):
            context.addcmul_(states[t], alpha[:, t:t + 1])
        ctx.save_for_backward(w1, w2, b1, b2, alpha, sums, *states)
        return context

    @staticmethod
    @torch.autograd.function.once_differentiable
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        grad = grad.contiguous()
        w1, w2, b1, b2, alpha, sums, *states = ctx.saved_tensors
        nodes, batch, units = states[0].shape
        grad_alpha = torch.stack([(grad * h).sum((0, 2)) for h in states], dim=1)  # [B, T]
        grad_e = alpha * (grad_alpha - (alpha * grad_alpha).sum(1, keepdim=True))  # softmax backward
        grad_sums = grad_e.t().unsqueeze(-1) * w1.reshape(1, 1, units)  # [T, B, U]
        grad_w1 = torch.einsum("tb,tbu->u", grad_e.t(), sums).view_as(w1)
        grad_w2 = torch.zeros(nodes, dtype=w2.dtype, device=w2.device)
        grad_states = []
        for t, h in enumerate(states):
            grad_w2.addmv_(h.reshape(nodes, batch * units), grad_sums[t].reshape(-1))
            grad_h = grad * alpha[:, t:t + 1]
            grad_h.view(nodes, batch * units).addr_(w2.reshape(nodes), grad_sums[t].reshape(-1))
            grad_states.append(grad_h)
        return (grad_w1, grad_w2.view_as(w2), torch.zeros_like(b1), torch.zeros_like(b2), *grad_states)
