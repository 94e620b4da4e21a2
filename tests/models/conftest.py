"""Shared helpers for the model tests: small graphs, dense references, a learnable signal."""
from __future__ import annotations

import math

import pytest
import torch
from helpers_graph import make_graph


def dense_adjacency(edge_index, edge_weight, num_nodes: int, dtype=torch.float64) -> torch.Tensor:
    """`W[source, target] = sum of weights` as a dense matrix."""
    w = torch.zeros(num_nodes, num_nodes, dtype=dtype)
    w.index_put_((edge_index[0], edge_index[1]), edge_weight.to(dtype), accumulate=True)
    return w


def dense_random_walk(edge_index, edge_weight, num_nodes: int, dtype=torch.float64):
    """DCRNN reference supports written out densely: `[(D_O^-1 W)^T, (D_I^-1 W^T)^T]`."""
    w = dense_adjacency(edge_index, edge_weight, num_nodes, dtype)
    d_out, d_in = w.sum(1), w.sum(0)
    forward = (torch.diag(1.0 / d_out) @ w).T
    reverse = (torch.diag(1.0 / d_in) @ w.T).T
    return [forward, reverse]


def dense_diffusion_terms(x: torch.Tensor, supports: list[torch.Tensor], max_step: int, recurrence="chebyshev"):
    """Reference terms of `x [N, F]`: `[x, T_1(A_1)x, .., T_K(A_1)x, T_1(A_2)x, ...]`, written out."""
    terms = [x]
    for a in supports:
        before, current = x, a @ x
        terms.append(current)
        for _ in range(2, max_step + 1):
            if recurrence == "power":
                nxt = a @ current
            elif recurrence == "pgt":
                nxt = 2 * a @ current - x
            else:
                nxt = 2 * a @ current - before
            before, current = current, nxt
            terms.append(current)
    return terms


def sinusoid_series(num_nodes: int, num_steps: int, edge_index, edge_weight, seed: int = 0):
    """A learnable signal `[T, N, 2]`: per-node sinusoids (random phases) smoothed by diffusion
    over the graph, plus the phase of the day as a second channel."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(num_steps, dtype=torch.float32)[:, None]
    phase = torch.rand(num_nodes, generator=g) * 2 * math.pi
    period = 24.0
    signal = torch.sin(2 * math.pi * t / period + phase)  # [T, N]
    w = dense_adjacency(edge_index, edge_weight, num_nodes, torch.float32)
    walk = torch.diag(1.0 / w.sum(1)) @ w
    signal = 0.5 * signal + 0.5 * signal @ walk  # one diffusion step: neighbours mix in
    time_of_day = torch.cos(2 * math.pi * t / period).expand(num_steps, num_nodes)
    return torch.stack([signal, time_of_day], dim=-1)


def windows(series: torch.Tensor, input_steps: int, output_steps: int):
    """All `(x [S, T_in, N, C], y [S, T_out, N, C])` windows of a series `[T, N, C]`."""
    span = input_steps + output_steps
    starts = torch.arange(series.shape[0] - span + 1)
    x = torch.stack([series[s: s + input_steps] for s in starts])
    y = torch.stack([series[s + input_steps: s + span] for s in starts])
    return x, y


def train_losses(model, x, y, *, steps: int, lr: float, batch_size: int = 8, seed: int = 0,
                 output_channels: int = 1):
    """Train with Adam on `(x, y)` batches (MAE on the first output_channels); returns the losses."""
    g = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=g)
        target = y[idx][..., :output_channels]
        out = model(x[idx], target, global_step=step)
        loss = (out - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(autouse=True)
def single_thread(one_thread):
    """Every model test on one thread (tests/conftest.py's `one_thread` says why)."""


@pytest.fixture
def helpers():
    """The helper functions above, for tests that need more than the fixtures."""
    import types

    return types.SimpleNamespace(
        make_graph=make_graph, dense_adjacency=dense_adjacency, dense_random_walk=dense_random_walk,
        dense_diffusion_terms=dense_diffusion_terms, sinusoid_series=sinusoid_series, windows=windows,
        train_losses=train_losses,
    )
