"""Graph WaveNet: the paper's size, shapes, graph convolution vs the reference's nconv."""
import torch

from pgti.models.gwnet import GraphWaveNet


def build(graph, **kw):
    edge_index, edge_weight, n = graph
    args = dict(num_nodes=n, input_channels=2, output_channels=1, input_steps=12, output_steps=12,
                edge_index=edge_index, edge_weight=edge_weight)
    return GraphWaveNet(**{**args, **kw})


def test_default_configuration(graph):
    model = build(graph)
    assert model.receptive_field == 13 and len(model.filter_convs) == 8
    assert [c.dilation[1] for c in model.filter_convs] == [1, 2] * 4
    # The reference code reports 309,400 parameters on METR-LA (207 nodes), 8 x 1,056 of them in
    # residual convolutions it never uses; ours: the same minus those and with 8-node embeddings.
    n = 8
    expected = 309_400 - 8 * 1_056 - 2 * 10 * (207 - n)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_output_shapes(graph):
    model = build(graph, input_steps=12, output_steps=12, output_channels=2)
    assert model(torch.randn(2, 12, 8, 2)).shape == (2, 12, 8, 2)
    longer = build(graph, input_steps=16, output_steps=3)
    assert longer(torch.randn(2, 16, 8, 2)).shape == (2, 3, 8, 1)


def test_graph_conv_matches_reference_nconv(graph, helpers):
    """Reference: out = mlp(cat[x, nconv(x, A), nconv(nconv(x, A), A) for A in supports + [adp]])
    with nconv(x, A) = einsum('ncvl,vw->ncwl') and A = D^-1 W (row-normalized), W^T likewise."""
    edge_index, edge_weight, n = graph
    model = build(graph, dropout=0.0).double().eval()
    w = helpers.dense_adjacency(edge_index, edge_weight, n)
    supports = [torch.diag(1 / w.sum(1)) @ w, torch.diag(1 / w.T.sum(1)) @ w.T, model.adaptive()]
    x = torch.randn(2, 32, n, 5, dtype=torch.float64)
    terms = [x]
    for a in supports:
        x1 = torch.einsum("ncvl,vw->ncwl", x, a)
        x2 = torch.einsum("ncvl,vw->ncwl", x1, a)
        terms += [x1, x2]
    conv = model.graph_convs[0]
    h = torch.cat(terms, dim=1)
    expected = torch.einsum("ncvl,oc->novl", h, conv.mlp.weight) + conv.mlp.bias[None, :, None, None]
    torch.testing.assert_close(conv(x, model.diffusion, model.adaptive()), expected)


def reference_forward(model, x, supports):
    """Graph WaveNet's forward as the reference code writes it (skips over every time step,
    truncated; nconv with dense supports), with `model`'s weights. x [B, C, N, T]."""
    import torch.nn.functional as F

    h = F.pad(x, (model.receptive_field - x.shape[3], 0))
    h = model.start_conv(h)
    skip = 0
    for i in range(len(model.filter_convs)):
        residual = h
        h = torch.tanh(model.filter_convs[i](residual)) * torch.sigmoid(model.gate_convs[i](residual))
        s = model.skip_convs[i](h)
        skip = s + (skip[:, :, :, -s.shape[3]:] if torch.is_tensor(skip) else 0)
        terms = [h]
        for a in supports:
            x1 = torch.einsum("ncvl,vw->ncwl", h, a)
            terms += [x1, torch.einsum("ncvl,vw->ncwl", x1, a)]
        mlp = model.graph_convs[i].mlp
        h = torch.einsum("ncvl,oc->novl", torch.cat(terms, 1), mlp.weight) + mlp.bias[None, :, None, None]
        h = model.norms[i](h + residual[:, :, :, -h.shape[3]:])
    out = model.end_conv_2(torch.relu(model.end_conv_1(torch.relu(skip))))
    return out  # [B, T_out, N, 1]


def test_model_matches_reference_forward(graph, helpers):
    edge_index, edge_weight, n = graph
    torch.manual_seed(0)
    model = build(graph, residual_channels=8, dilation_channels=8, skip_channels=16, end_channels=16).double()
    x = torch.randn(3, 12, n, 2, dtype=torch.float64)
    model.train()
    model(x)  # move the batch-norm running statistics away from their initial values
    model.eval()
    w = helpers.dense_adjacency(edge_index, edge_weight, n)
    supports = [torch.diag(1 / w.sum(1)) @ w, torch.diag(1 / w.T.sum(1)) @ w.T, model.adaptive()]
    expected = reference_forward(model, x.permute(0, 3, 2, 1), supports)  # [B, 12, N, 1]
    torch.testing.assert_close(model(x), expected)
