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


def test_attention_and_context_equal_the_papers_formulas(graph):
    """The per-step sums (node sums first, no stacked states) give the paper's eq. 7-9 as written:
    e = w2 (H w1 + b1) + b2 over the stacked states, alpha = softmax_t(e), C = sum_t alpha_t H_t;
    the forecast and every parameter's gradient agree to float rounding."""
    model = build(graph, hidden_size=5).double()
    for p in model.parameters():  # every weight away from its init: a transposed or misplaced one shows
        torch.nn.init.normal_(p)
    x = torch.randn(3, 6, 8, 2, dtype=torch.float64)
    support = model.support[0]
    h, states = torch.zeros(8, 3, 5, dtype=torch.float64), []
    for t in range(6):
        h = model.cell(support, x[:, t].transpose(0, 1), h)
        states.append(h)
    stacked = torch.stack(states, dim=1)  # [N, T, B, U]
    e = model.attention_nodes(model.attention_state(stacked).squeeze(-1).permute(2, 1, 0)).squeeze(-1)  # [B, T]
    alpha = torch.softmax(e, dim=1)
    torch.testing.assert_close(model.attention(states), alpha)
    context = torch.einsum("ntbu,bt->nbu", stacked, alpha)
    expected = model.output(context).view(8, 3, 4, 1).permute(1, 2, 0, 3)
    got = model(x)
    torch.testing.assert_close(got, expected)
    grads = torch.autograd.grad(expected.square().sum(), list(model.parameters()))
    for p, g, name in zip(model.parameters(), grads, [n for n, _ in model.named_parameters()]):
        torch.testing.assert_close(torch.autograd.grad(got.square().sum(), p, retain_graph=True)[0], g, msg=name)


def test_attention_context_backward_passes_gradcheck():
    """The hand-written backward of the attention context against finite differences (float64)."""
    from pgti.models.a3tgcn import _AttentionContext

    torch.manual_seed(0)
    n, b, u, t = 5, 3, 4, 4
    inputs = [torch.randn(1, u), torch.randn(1, n), torch.randn(1), torch.randn(1)]
    inputs += [torch.randn(n, b, u) for _ in range(t)]
    inputs = [x.double().requires_grad_() for x in inputs]
    assert torch.autograd.gradcheck(_AttentionContext.apply, inputs)
