"""Graph WaveNet (Wu, Pan, Long, Jiang, Zhang; IJCAI 2019).

Stacked layers of gated dilated causal convolutions along time (`tanh(conv_f) * sigmoid(conv_g)`,
kernel 2, dilations 1, 2, 1, 2, ...), each followed by a graph convolution over the diffusion
supports and a self-adaptive adjacency, a residual connection and batch norm; every layer feeds a
skip connection, and two 1x1 convolutions map the summed skips to the forecast. The graph
convolution of a layer is

    Z = sum_k  P_f^k X W_k1 + P_b^k X W_k2 + A_adp^k X W_k3     (k = 0..K, the k=0 term once)

with `P_f = (D_O^-1 W)^T`, `P_b = (D_I^-1 W^T)^T` (the reference's "doubletransition" as
applied by its `nconv`) and `A_adp = softmax(relu(E1 E2))` (applied transposed, likewise). The
given supports stay sparse; the adaptive adjacency is dense `[N, N]` by nature.

Paper defaults: 8 layers (4 blocks x 2), 32 residual / dilation channels, 256 skip, 512 end
channels, K = 2, dropout 0.3, node embeddings of size 10. The receptive field is 13 steps; a
12-step input is left-padded with zeros as in the reference. Differences from the reference
code, which do not change the function: no unused residual 1x1 convolutions (the reference
creates them even when the graph convolution replaces them, 8 x 1,056 parameters that DDP would
flag as unused), and the output channels are `T_out * C_out` (reference: `T_out`, C_out = 1).

Shapes: `x [B, T_in, N, C_in]` -> `[B, T_out, N, C_out]`. y / global_step are ignored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pgti.models.activations import tanh
from pgti.models.dcgru import project
from pgti.models.defaults import TrainingDefaults
from pgti.models.diffusion import Diffusion
from pgti.models.graph import random_walk_supports

PAPER = ("Wu, Pan, Long, Jiang, Zhang. Graph WaveNet for Deep Spatial-Temporal Graph Modeling. "
         "IJCAI 2019")

TRAINING_DEFAULTS = TrainingDefaults(
    optimizer="adam", learning_rate=1e-3, weight_decay=1e-4, grad_clip_norm=5.0, batch_size=64,
    epochs=100, input_steps=12, output_steps=12, loss="masked_mae",
    source="Graph WaveNet paper and reference train.py (Adam 1e-3, weight decay 1e-4, clip 5, batch 64, 100 epochs)",
)


class GraphWaveNetConv(nn.Module):
    """Diffusion graph convolution of one layer: `x [B, C, N, T]` -> `[B, C_out, N, T]`."""

    def __init__(self, in_channels: int, out_channels: int, num_terms: int, dropout: float):
        super().__init__()
        self.in_channels, self.num_terms, self.dropout = in_channels, num_terms, dropout
        self.mlp = nn.Linear(num_terms * in_channels, out_channels)  # the reference's 1x1 conv

    def forward(self, x: torch.Tensor, diffusion: Diffusion, adaptive: torch.Tensor | None) -> torch.Tensor:
        batch, channels, nodes, steps = x.shape
        node_major = x.permute(2, 0, 3, 1).contiguous()  # [N, B, T, C]: one product per support
        terms = diffusion(node_major)
        if adaptive is not None:
            current = node_major.view(nodes, -1)
            for _ in range(diffusion.max_step):
                current = adaptive.t() @ current
                terms.append(current.view(-1, channels))
        weight = self.mlp.weight.view(-1, self.num_terms, channels)  # [C_out, M, C], term-major input
        out = project(terms, [weight[:, m].t() for m in range(self.num_terms)], self.mlp.bias)
        out = out.view(nodes, batch, steps, -1).permute(1, 3, 0, 2)
        return F.dropout(out, self.dropout, training=self.training)


class GraphWaveNet(nn.Module):
    """Graph WaveNet. `forward(x [B, T_in, N, C_in], y=None, *, global_step=None) -> [B, T_out, N, C_out]`.

    Args (beyond the common ones): residual_channels (32), dilation_channels (32),
    skip_channels (256), end_channels (512), kernel_size (2), blocks (4), layers_per_block (2),
    diffusion_order (K, 2), dropout (0.3), adaptive_adjacency (True), node_embedding_dim (10).
    """

    def __init__(self, *, num_nodes: int, input_channels: int, output_channels: int,
                 input_steps: int, output_steps: int, edge_index, edge_weight=None,
                 residual_channels: int = 32, dilation_channels: int = 32, skip_channels: int = 256,
                 end_channels: int = 512, kernel_size: int = 2, blocks: int = 4, layers_per_block: int = 2,
                 diffusion_order: int = 2, dropout: float = 0.3, adaptive_adjacency: bool = True,
                 node_embedding_dim: int = 10):
        super().__init__()
        self.num_nodes, self.input_steps, self.output_steps = num_nodes, input_steps, output_steps
        self.input_channels, self.output_channels = input_channels, output_channels
        self.diffusion = Diffusion(random_walk_supports(edge_index, edge_weight, num_nodes),
                                   diffusion_order, recurrence="power")
        num_terms = self.diffusion.num_terms + (diffusion_order if adaptive_adjacency else 0)
        if adaptive_adjacency:
            self.node_embedding_source = nn.Parameter(torch.randn(num_nodes, node_embedding_dim))
            self.node_embedding_target = nn.Parameter(torch.randn(node_embedding_dim, num_nodes))
        self.adaptive_adjacency = adaptive_adjacency
        self.start_conv = nn.Conv2d(input_channels, residual_channels, kernel_size=(1, 1))
        self.filter_convs, self.gate_convs = nn.ModuleList(), nn.ModuleList()
        self.skip_convs, self.graph_convs, self.norms = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        self.receptive_field = 1
        for _ in range(blocks):
            dilation = 1
            for _ in range(layers_per_block):
                conv = dict(kernel_size=(1, kernel_size), dilation=(1, dilation))
                self.filter_convs.append(nn.Conv2d(residual_channels, dilation_channels, **conv))
                self.gate_convs.append(nn.Conv2d(residual_channels, dilation_channels, **conv))
                self.skip_convs.append(nn.Conv2d(dilation_channels, skip_channels, kernel_size=(1, 1)))
                self.graph_convs.append(GraphWaveNetConv(dilation_channels, residual_channels, num_terms, dropout))
                self.norms.append(nn.BatchNorm2d(residual_channels))
                self.receptive_field += (kernel_size - 1) * dilation
                dilation *= 2
        self.end_conv_1 = nn.Conv2d(skip_channels, end_channels, kernel_size=(1, 1))
        self.end_conv_2 = nn.Conv2d(end_channels, output_steps * output_channels, kernel_size=(1, 1))

    def adaptive(self) -> torch.Tensor | None:
        """The self-adaptive adjacency `softmax(relu(E1 E2))` `[N, N]` (rows sum to 1), or None."""
        if not self.adaptive_adjacency:
            return None
        return torch.softmax(torch.relu(self.node_embedding_source @ self.node_embedding_target), dim=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                global_step: int | None = None) -> torch.Tensor:
        batch, steps, nodes, _ = x.shape
        h = x.permute(0, 3, 2, 1)  # [B, C_in, N, T]
        if steps < self.receptive_field:
            h = F.pad(h, (self.receptive_field - steps, 0))
        h = self.start_conv(h)
        adaptive = self.adaptive()
        skip = 0.0
        for i in range(len(self.filter_convs)):
            residual = h
            h = tanh(self.filter_convs[i](residual)) * torch.sigmoid(self.gate_convs[i](residual))
            # The forecast reads the skip sum at the last time step only, and 1x1 convolutions
            # are pointwise in time: convolving that step alone gives the reference's result.
            skip = skip + self.skip_convs[i](h[..., -1:])
            h = self.graph_convs[i](h, self.diffusion, adaptive)
            h = self.norms[i](h + residual[..., -h.shape[3]:])
        out = self.end_conv_2(torch.relu(self.end_conv_1(torch.relu(skip))))  # [B, T_out*C_out, N, 1]
        return out.view(batch, self.output_steps, self.output_channels, nodes).transpose(2, 3)
