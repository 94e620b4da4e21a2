"""The model tests' random graph, also used by the reference-model tests in tests/bench."""
from __future__ import annotations

import torch


def make_graph(num_nodes: int = 8, extra_edges: int = 16, seed: int = 0, self_loops: bool = True):
    """A random directed weighted graph `(edge_index [2, E], edge_weight [E])`.

    A directed ring guarantees every node an in- and an out-edge; extra random edges (possibly
    duplicates, which count summed) and optional self-loops make it irregular. Edges are shuffled
    so nothing relies on their order.
    """
    g = torch.Generator().manual_seed(seed)
    ring = torch.arange(num_nodes)
    sources = [ring, torch.randint(0, num_nodes, (extra_edges,), generator=g)]
    targets = [(ring + 1) % num_nodes, torch.randint(0, num_nodes, (extra_edges,), generator=g)]
    if self_loops:
        sources.append(ring), targets.append(ring)
    edge_index = torch.stack([torch.cat(sources), torch.cat(targets)])
    edge_index = edge_index[:, torch.randperm(edge_index.shape[1], generator=g)]
    edge_weight = torch.rand(edge_index.shape[1], generator=g) + 0.1
    return edge_index, edge_weight
