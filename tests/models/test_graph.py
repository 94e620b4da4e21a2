"""Graph supports against dense formulas and torch_geometric / PGT semantics."""
import numpy as np
import pytest
import torch

from pgti.models.graph import edge_tensors, gcn_support, pgt_supports, random_walk_supports, sym_normalized_laplacian


def test_random_walk_supports_match_dense(graph, helpers):
    edge_index, edge_weight, n = graph
    forward, reverse = random_walk_supports(edge_index, edge_weight, n)
    dense_forward, dense_reverse = helpers.dense_random_walk(edge_index, edge_weight, n)
    torch.testing.assert_close(forward.to_dense().double(), dense_forward, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(reverse.to_dense().double(), dense_reverse, rtol=1e-6, atol=1e-6)
    # Applied as A @ X, mass is conserved: the columns of (D_O^-1 W)^T sum to 1.
    torch.testing.assert_close(forward.to_dense().sum(0), torch.ones(n))


def test_random_walk_isolated_node_diffuses_nothing():
    edge_index = torch.tensor([[0, 1], [1, 0]])
    forward, reverse = random_walk_supports(edge_index, None, 3)
    assert forward.to_dense()[:, 2].abs().sum() == 0 and reverse.to_dense()[2].abs().sum() == 0


def test_pgt_supports_use_weights_only_through_degrees():
    edge_index = torch.tensor([[0, 0, 1], [1, 2, 2]])
    forward, _ = pgt_supports(edge_index, torch.tensor([1.0, 3.0, 2.0]), 3)
    # out-degree of node 0 is 4: both of its edges carry 1/4, whatever their own weight
    torch.testing.assert_close(forward.to_dense()[:, 0], torch.tensor([0.0, 0.25, 0.25]))


def test_gcn_support_is_renormalized_adjacency_on_symmetric_graph(helpers):
    n = 6
    pairs = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0], [0, 3], [1, 4]]).T
    both = torch.cat([pairs, pairs.flip(0)], dim=1)
    weight = torch.rand(pairs.shape[1]).repeat(2) + 0.1
    w = helpers.dense_adjacency(both, weight, n) + torch.eye(n, dtype=torch.float64)
    d = w.sum(1).rsqrt()
    expected = d[:, None] * w * d[None, :]
    torch.testing.assert_close(gcn_support(both, weight, n).to_dense().double(), expected, rtol=1e-6, atol=1e-6)


def test_sym_normalized_laplacian_on_symmetric_graph(helpers):
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    weight = torch.tensor([1.0, 1.0, 2.0, 2.0])
    w = helpers.dense_adjacency(edge_index, weight, 3)
    d = w.sum(1).rsqrt()
    expected = torch.eye(3, dtype=w.dtype) - d[:, None] * w * d[None, :]
    torch.testing.assert_close(sym_normalized_laplacian(edge_index, weight, 3).to_dense().double(), expected)


def test_edge_tensors_accepts_numpy_and_validates():
    index, weight = edge_tensors(np.array([[0, 1], [1, 0]]), np.array([1.0, 2.0], dtype=np.float32), 2)
    assert index.dtype == torch.long and weight.dtype == torch.float32
    with pytest.raises(ValueError, match="outside"):
        edge_tensors(torch.tensor([[0, 5], [1, 0]]), None, 2)
    with pytest.raises(ValueError, match="entries"):
        edge_tensors(torch.tensor([[0, 1], [1, 0]]), torch.ones(3), 2)
