"""Batched sparse diffusion against the dense recurrence written out."""
import pytest
import torch

from pgti.models.diffusion import Diffusion
from pgti.models.graph import random_walk_supports


@pytest.mark.parametrize("recurrence", ["chebyshev", "pgt", "power"])
@pytest.mark.parametrize("max_step", [0, 1, 2, 3])
def test_sparse_diffusion_equals_dense_reference(helpers, recurrence, max_step):
    edge_index, edge_weight = helpers.make_graph(9, 25, seed=3)
    diffusion = Diffusion(random_walk_supports(edge_index, edge_weight, 9), max_step, recurrence)
    x = torch.randn(9, 5, 3)  # [N, B, C]
    terms = diffusion(x)
    dense = helpers.dense_random_walk(edge_index, edge_weight, 9, dtype=torch.float32)
    expected = helpers.dense_diffusion_terms(x.reshape(9, -1), dense, max_step, recurrence)
    assert len(terms) == diffusion.num_terms == 1 + 2 * max_step
    for got, want in zip(terms, expected):
        torch.testing.assert_close(got, want.reshape(-1, 3), rtol=1e-5, atol=1e-5)


def test_diffusion_gradient(helpers):
    edge_index, edge_weight = helpers.make_graph(6, 10, seed=4)
    diffusion = Diffusion(random_walk_supports(edge_index, edge_weight, 6), 3).double()
    x = torch.randn(6, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: torch.stack(diffusion(v)), (x,))
