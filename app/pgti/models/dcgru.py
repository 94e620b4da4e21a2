"""The diffusion convolutional GRU cell (DCGRU, Li et al., ICLR 2018, eq. 3-4).

    r, u = sigmoid(Theta_ru *G [X, H] + b_ru)
    C    = tanh(Theta_C *G [X, r . H] + b_C)
    H'   = u . H + (1 - u) . C

where `Theta *G Z = sum_m T_m(Z) W_m` over the diffusion terms `T_m` (see `diffusion.py`).
Diffusion is linear, so the terms of `[X, H]` are the terms of X next to those of H: the cell
diffuses X once for both convolutions (and a narrow input sequence once for all its steps:
`input_parts`), then only H and `r . H` inside the recurrence. Tensors are node-major,
`[N, B, C]`, so every diffusion is one sparse product over the whole batch.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from pgti.models.activations import gru_gates, gru_update, tanh
from pgti.models.diffusion import Diffusion


@dataclass
class GRUWeights:
    """A DCGRU's weights split per diffusion term (m = 0..M-1).

    x:      M tensors `[C_in, 3U]`, columns (reset r, update u, candidate).
    gate_h: M tensors `[U, 2U]`, columns (r, u).
    cand_h: M tensors `[U, U]`.
    bias:   `[3U]`, (r, u, candidate).
    """

    x: list[torch.Tensor]
    gate_h: list[torch.Tensor]
    cand_h: list[torch.Tensor]
    bias: torch.Tensor


# Below this many input features per row, one matmul over the concatenated terms beats
# M accumulated matmuls (tiny-K GEMMs are slow; measured on AVX-512 CPUs with MKL).
_CONCAT_BELOW = 64


def project(terms: list[torch.Tensor], weights: list[torch.Tensor], bias: torch.Tensor | None = None):
    """`sum_m terms[m] @ weights[m] (+ bias)`: `[R, C]` x `[C, O]` -> `[R, O]`."""
    if terms[0].shape[1] * len(terms) < _CONCAT_BELOW:
        features, weight = torch.cat(terms, dim=1), torch.cat(weights, dim=0)
        return torch.addmm(bias, features, weight) if bias is not None else features @ weight
    out = torch.addmm(bias, terms[0], weights[0]) if bias is not None else terms[0] @ weights[0]
    # autocast (train.bf16) casts only out-of-place ops: there `out` is bfloat16 and the terms not
    in_place = not torch.is_autocast_enabled(out.device.type)
    for term, weight in zip(terms[1:], weights[1:]):
        out = out.addmm_(term, weight) if in_place else torch.addmm(out, term, weight)
    return out


def input_part(diffusion: Diffusion, x: torch.Tensor, weights: GRUWeights) -> torch.Tensor:
    """The input's share of all three pre-activations (biases included): `[N, *L, C_in] -> [N, *L, 3U]`.

    `L` is any batch of columns: `[B]` for one step, `[T, B]` for a whole sequence at once.
    """
    out = project(diffusion(x), weights.x, weights.bias)
    return out.view(*x.shape[:-1], out.shape[-1])


# Diffuse a whole input sequence at once while its columns (T * B * C) stay below this: one
# wide sparse product beats several narrow ones up to here. Hoisting keeps every step's terms
# and parts alive at once: in training autograd keeps most of them anyway, but without grad
# (evaluation) step by step holds one step's worth only, so there the widest hoisted tensor,
# N * T * B * max(C * M terms, 3U), must stay below the value bound. At full-PeMS scale
# (N = 11,160, eval batch 256) a hoisted evaluation forward measured 3.5 GB, step by step 0.7 GB.
_HOIST_MAX_COLUMNS = 8192
_HOIST_MAX_VALUES = 1 << 22  # training: the input itself (N * T * B * C)
_HOIST_MAX_VALUES_NO_GRAD = 1 << 22  # evaluation: the widest hoisted tensor


def input_parts(diffusion: Diffusion, steps: list[torch.Tensor], weights: GRUWeights) -> Iterator[torch.Tensor]:
    """`input_part` of every step of a sequence: T x `[N, B, C_in]` -> T x `[N, B, 3U]`, all at
    once for small sequences, else lazily step by step (each part lives only until its step
    has used it)."""
    nodes, channels = steps[0].shape[0], steps[0].shape[-1]
    columns = len(steps) * steps[0][0].numel()  # T * B * C
    if torch.is_grad_enabled():
        values = nodes * columns
        limit = _HOIST_MAX_VALUES
    else:
        values = nodes * columns // channels * max(channels * diffusion.num_terms, weights.x[0].shape[1])
        limit = _HOIST_MAX_VALUES_NO_GRAD
    if columns <= _HOIST_MAX_COLUMNS and values <= limit:
        return iter(input_part(diffusion, torch.stack(steps, dim=1), weights).unbind(1))
    return (input_part(diffusion, x_t, weights) for x_t in steps)


def dcgru_step(diffusion: Diffusion, x_part: torch.Tensor, h: torch.Tensor, weights: GRUWeights):
    """One DCGRU step: `x_part [N, B, 3U]` (from `input_part`), `h [N, B, U]` -> new `h [N, B, U]`."""
    units = h.shape[-1]
    x_gates, x_candidate = x_part.split([2 * units, units], dim=-1)
    gates = project(diffusion(h), weights.gate_h).view(*h.shape[:-1], 2 * units)
    update, reset_h = gru_gates(gates + x_gates, h)
    candidate = project(diffusion(reset_h), weights.cand_h).view_as(h)
    candidate = tanh(candidate + x_candidate)
    return gru_update(candidate, h, update)


class GRUParameters(nn.Module):
    """The four parameters of a graph GRU cell: `gate_weight [rows, 2U]`, `gate_bias [2U]`,
    `candidate_weight [rows, U]`, `candidate_bias [U]`; weights Xavier-uniform, gate bias 1
    (gates start open, as in the DCRNN reference), candidate bias 0."""

    def __init__(self, rows: int, hidden_size: int):
        super().__init__()
        self.gate_weight = nn.Parameter(torch.empty(rows, 2 * hidden_size))
        self.gate_bias = nn.Parameter(torch.empty(2 * hidden_size))
        self.candidate_weight = nn.Parameter(torch.empty(rows, hidden_size))
        self.candidate_bias = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.gate_weight)
        nn.init.xavier_uniform_(self.candidate_weight)
        nn.init.constant_(self.gate_bias, 1.0)
        nn.init.zeros_(self.candidate_bias)


class DCGRUCell(GRUParameters):
    """DCGRU with the DCRNN reference implementation's parameters.

    `gate_weight [(C_in + U) * M, 2U]` and `candidate_weight [(C_in + U) * M, U]`, rows ordered
    `c * M + m` (channel-major over the M diffusion terms, channels `[X, H]`), as in the
    reference TensorFlow / PyTorch code.
    """

    def __init__(self, input_size: int, hidden_size: int, num_terms: int):
        super().__init__((input_size + hidden_size) * num_terms, hidden_size)
        self.input_size, self.hidden_size, self.num_terms = input_size, hidden_size, num_terms

    def weights(self) -> GRUWeights:
        cin, units, m = self.input_size, self.hidden_size, self.num_terms
        gate = self.gate_weight.view(cin + units, m, 2 * units)
        cand = self.candidate_weight.view(cin + units, m, units)
        x = [torch.cat([gate[:cin, k], cand[:cin, k]], dim=1) for k in range(m)]
        return GRUWeights(
            x=x,
            gate_h=[gate[cin:, k] for k in range(m)],
            cand_h=[cand[cin:, k] for k in range(m)],
            bias=torch.cat([self.gate_bias, self.candidate_bias]),
        )

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}, num_terms={self.num_terms}"

