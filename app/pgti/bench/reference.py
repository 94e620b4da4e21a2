"""Reference models that diffuse the way PGT-I does: message passing over replicated edges.

PGT-I's `BatchedDCRNN` flattens a batch to `[B*N, C]` and replicates `edge_index` B times with
node offsets `b*N`, then runs torch_geometric `MessagePassing` (gather `x_j`, scale, scatter-add)
per diffusion step. These models compute the same functions as pgti's with that machinery and
the same parameters (load our `state_dict`), so `pgti bench model` can compare speed and memory
on equal terms and check that the outputs agree.

- `PGTBatchedDCRNN`: PGT's BatchedDCRNN / updatedDConv algorithm (reference for `dcrnn-pgt`).
- `MessagePassingDCRNN`: our DCRNN seq2seq model with its diffusion convolution replaced by the
  replicated-edge message-passing one, written as the DCRNN reference's `_gconv` (concatenate
  `[X, H]`, diffuse, stack the terms, one matmul) - the reference for `dcrnn`.
"""
from __future__ import annotations

import os
import sys

import torch
from torch import nn
from torch_geometric.nn import MessagePassing

from pgti.models.dcrnn import DCRNN
from pgti.models.dcrnn_pgt import PGTDiffusionWeights
from pgti.models.graph import degrees, edge_tensors


class EdgePropagation(MessagePassing):
    """`out[target_e] += norm_e * x[source_e]` (flow source -> target, sum aggregation)."""

    def __init__(self):
        super().__init__(aggr="add", flow="source_to_target")
        _remove_template_file(f"{type(self).__module__}_{type(self).__name__}_propagate")

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        return self.propagate(edge_index, x=x, norm=norm, size=None)

    def message(self, x_j: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        return norm.view(-1, 1) * x_j


def _remove_template_file(module_name: str) -> None:
    """torch_geometric renders `propagate` from a jinja template into a `NamedTemporaryFile(delete=False)`
    and imports it; the file is never removed, so every process left one in /tmp. Once the module
    is imported its file is no longer needed (only tracebacks would show its source)."""
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if path and os.path.basename(path).startswith(module_name) and os.path.exists(path):
        try:
            os.unlink(path)
        except OSError:  # another process's, or already gone
            pass


def replicate_edges(edge_index: torch.Tensor, batch_size: int, num_nodes: int) -> torch.Tensor:
    """`[2, E]` -> `[2, B*E]`: the graph repeated for every sample, with node offsets `b*N`."""
    return torch.cat([edge_index + b * num_nodes for b in range(batch_size)], dim=1)


class ReplicatedGraph(nn.Module):
    """Edges and per-edge norms of each direction, replicated for a batch size (cached)."""

    def __init__(self, directions: list[tuple[torch.Tensor, torch.Tensor]], num_nodes: int):
        super().__init__()
        self.num_nodes = num_nodes
        self.directions = directions  # [(edge_index [2, E], norm [E])]
        self._cache: tuple[int, list] | None = None

    def _apply(self, fn, recurse=True):
        self.directions = [(fn(index), fn(norm)) for index, norm in self.directions]
        self._cache = None
        return super()._apply(fn, recurse)

    def batched(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._cache is None or self._cache[0] != batch_size:
            self._cache = (batch_size, [(replicate_edges(index, batch_size, self.num_nodes), norm.repeat(batch_size))
                                        for index, norm in self.directions])
        return self._cache[1]


# --------------------------------------------------------------------------- PGT's BatchedDCRNN


def pgt_directions(edge_index, edge_weight, num_nodes: int):
    """PGT updatedDConv's (edge_index, norm) for the forward and the reverse direction."""
    edge_index, edge_weight = edge_tensors(edge_index, edge_weight, num_nodes)
    source, target = edge_index
    out_degree, in_degree = degrees(edge_index, edge_weight, num_nodes)
    norm_out, norm_in = out_degree.reciprocal()[source], in_degree.reciprocal()[source]
    norm_in[~torch.isfinite(norm_in)] = 0.0  # PGT: inf; see graph.pgt_supports
    norm_out[~torch.isfinite(norm_out)] = 0.0
    reverse = torch.stack([target, source])
    reverse = reverse[:, torch.argsort(reverse[0] * num_nodes + reverse[1], stable=True)]
    return [(edge_index, norm_out), (reverse, norm_in)]


class PGTMessagePassingDConv(PGTDiffusionWeights):
    """PGT's `updatedDConv` on `[B*N, C]` with replicated edges (same parameters as pgti's)."""

    def __init__(self, in_channels: int, out_channels: int, K: int):
        super().__init__(in_channels, out_channels, K)
        self.propagation = EdgePropagation()

    def forward(self, x: torch.Tensor, directions) -> torch.Tensor:
        (fwd_index, fwd_norm), (rev_index, rev_norm) = directions
        w = self.weight
        h = x @ w[0, 0] + x @ w[1, 0]
        if w.shape[1] > 1:
            fwd = self.propagation(x, fwd_index, fwd_norm)
            rev = self.propagation(x, rev_index, rev_norm)
            h = h + fwd @ w[0, 1] + rev @ w[1, 1]
        for k in range(2, w.shape[1]):
            fwd = 2.0 * self.propagation(fwd, fwd_index, fwd_norm) - x  # PGT subtracts X for every k
            rev = 2.0 * self.propagation(rev, rev_index, rev_norm) - x
            h = h + fwd @ w[0, k] + rev @ w[1, k]
        return h + self.bias


class PGTBatchedDCRNN(nn.Module):
    """PGT-I's BatchedDCRNN, rewritten: `x [B, T, N, C_in] -> [B, T, N, C_out]` (hidden states)."""

    def __init__(self, *, num_nodes: int, input_channels: int, output_channels: int,
                 edge_index, edge_weight=None, K: int = 3, **_ignored):
        super().__init__()
        self.output_channels = output_channels
        self.graph = ReplicatedGraph(pgt_directions(edge_index, edge_weight, num_nodes), num_nodes)
        in_channels = input_channels + output_channels
        self.conv_x_z = PGTMessagePassingDConv(in_channels, output_channels, K)
        self.conv_x_r = PGTMessagePassingDConv(in_channels, output_channels, K)
        self.conv_x_h = PGTMessagePassingDConv(in_channels, output_channels, K)

    def forward(self, x: torch.Tensor, y=None, *, global_step=None) -> torch.Tensor:
        batch, steps, nodes, channels = x.shape
        directions = self.graph.batched(batch)
        h = x.new_zeros(batch * nodes, self.output_channels)
        outputs = []
        for t in range(steps):
            x_t = x[:, t].reshape(batch * nodes, channels)
            z = torch.sigmoid(self.conv_x_z(torch.cat([x_t, h], dim=1), directions))
            r = torch.sigmoid(self.conv_x_r(torch.cat([x_t, h], dim=1), directions))
            h_tilde = torch.tanh(self.conv_x_h(torch.cat([x_t, h * r], dim=1), directions))
            h = z * h + (1 - z) * h_tilde
            outputs.append(h.view(batch, nodes, -1))
        return torch.stack(outputs, dim=1)


# --------------------------------------------------------------------------- DCRNN, message passing


def random_walk_directions(edge_index, edge_weight, num_nodes: int):
    """(edge_index, norm) realizing `(D_O^-1 W)^T` and `(D_I^-1 W^T)^T` by message passing."""
    edge_index, edge_weight = edge_tensors(edge_index, edge_weight, num_nodes)
    source, target = edge_index
    out_degree, in_degree = degrees(edge_index, edge_weight, num_nodes)
    inv_out, inv_in = out_degree.reciprocal(), in_degree.reciprocal()
    inv_out[~torch.isfinite(inv_out)] = 0.0
    inv_in[~torch.isfinite(inv_in)] = 0.0
    return [(edge_index, edge_weight * inv_out[source]),
            (torch.stack([target, source]), edge_weight * inv_in[target])]


class MessagePassingDCRNN(DCRNN):
    """`DCRNN` (same parameters) whose diffusion convolution is replicated-edge message passing.

    Layout `[B*N, C]` as in PGT-I; each convolution diffuses the concatenation `[X, H]` (or
    `[X, r.H]`), stacks the terms channel-major and multiplies once, like the DCRNN reference.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        edge_index, edge_weight = kwargs["edge_index"], kwargs.get("edge_weight")
        self.graph = ReplicatedGraph(random_walk_directions(edge_index, edge_weight, self.num_nodes),
                                     self.num_nodes)
        self.propagation = EdgePropagation()

    def _gconv(self, z: torch.Tensor, directions, weight, bias) -> torch.Tensor:
        terms = [z]
        for index, norm in directions:
            prev, cur = z, self.propagation(z, index, norm)
            terms.append(cur)
            for _ in range(2, self.diffusion.max_step + 1):
                prev, cur = cur, 2.0 * self.propagation(cur, index, norm) - prev
                terms.append(cur)
        stacked = torch.stack(terms, dim=-1).reshape(z.shape[0], -1)  # row c*M + m
        return torch.addmm(bias, stacked, weight)

    def _cell(self, cell, x, h, directions):
        units = cell.hidden_size
        gates = torch.sigmoid(self._gconv(torch.cat([x, h], 1), directions, cell.gate_weight, cell.gate_bias))
        r, u = gates.split(units, dim=1)
        c = torch.tanh(self._gconv(torch.cat([x, r * h], 1), directions, cell.candidate_weight,
                                   cell.candidate_bias))
        return u * h + (1.0 - u) * c

    def forward(self, x: torch.Tensor, y=None, *, global_step=None) -> torch.Tensor:
        batch, steps, nodes, channels = x.shape
        directions = self.graph.batched(batch)
        states = [x.new_zeros(batch * nodes, self.hidden_size) for _ in range(self.num_layers)]
        for t in range(steps):
            layer_input = x[:, t].reshape(batch * nodes, channels)
            for i, cell in enumerate(self.encoder):
                states[i] = self._cell(cell, layer_input, states[i], directions)
                layer_input = states[i]
        threshold = self.teacher_forcing_probability(y, global_step)
        step_input = x.new_zeros(batch * nodes, self.output_channels)  # GO symbol
        outputs = []
        for t in range(self.output_steps):
            layer_input = step_input
            for i, cell in enumerate(self.decoder):
                states[i] = self._cell(cell, layer_input, states[i], directions)
                layer_input = states[i]
            prediction = self.projection(layer_input)
            outputs.append(prediction.view(batch, nodes, -1))
            use_truth = threshold is not None and float(torch.rand(())) < threshold
            step_input = (y[:, t, :, : self.output_channels].reshape(batch * nodes, -1)
                          if use_truth else prediction)
        return torch.stack(outputs, dim=1)
