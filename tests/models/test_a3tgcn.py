"""A3T-GCN: shapes, attention weights, and the attention's effect."""
import torch

from pgti.models.a3tgcn import A3TGCN


def build(graph, **kw):
    edge_index, edge_weight, n = graph
    args = dict(num_nodes=n, input_channels=2, output_channels=1, input_steps=6, output_steps=4,
                edge_index=edge_index, edge_weight=edge_weight, hidden_size=8)
    return A3TGCN(**{**args, **kw})


def test_output_shape(graph):
    assert build(graph)(torch.randn(3, 6, 8, 2)).shape == (3, 4, 8, 1)
    assert build(graph, output_channels=2, output_steps=12)(torch.randn(2, 6, 8, 2)).shape == (2, 12, 8, 2)


def test_attention_is_a_distribution_over_input_periods(graph):
    model = build(graph)
    states = list(torch.randn(6, 8, 3, 8))  # T x [N, B, U]
    alpha = model.attention(states)
    assert alpha.shape == (3, 6)
    torch.testing.assert_close(alpha.sum(1), torch.ones(3))


def test_samples_are_independent(graph):
    """Batched sparse products must not mix samples: each output depends on its own input only."""
    model = build(graph).eval()
    x = torch.randn(4, 6, 8, 2)
    full = model(x)
    torch.testing.assert_close(full[1:2], model(x[1:2]), rtol=1e-5, atol=1e-6)
