"""DCGRU cells (ours and PGT's parametrization) against dense reference computations."""
import torch

from pgti.models.dcgru import DCGRUCell, dcgru_step, input_part
from pgti.models.dcrnn_pgt import PGTDCRNN
from pgti.models.diffusion import Diffusion
from pgti.models.graph import random_walk_supports


def dense_gconv(z, supports, max_step, weight, bias, helpers):
    """DCRNN reference `_gconv`: terms of z [B, N, C] stacked channel-major, one matmul."""
    batch, nodes, channels = z.shape
    flat = z.permute(1, 0, 2).reshape(nodes, -1)
    terms = helpers.dense_diffusion_terms(flat, supports, max_step)
    stacked = torch.stack([t.reshape(nodes, batch, channels) for t in terms], dim=-1)  # [N, B, C, M]
    return (stacked.permute(1, 0, 2, 3).reshape(batch, nodes, -1) @ weight) + bias


def dense_dcgru(x, h, supports, max_step, cell, helpers):
    units = h.shape[-1]
    gates = torch.sigmoid(dense_gconv(torch.cat([x, h], -1), supports, max_step,
                                      cell.gate_weight, cell.gate_bias, helpers))
    r, u = gates[..., :units], gates[..., units:]
    c = torch.tanh(dense_gconv(torch.cat([x, r * h], -1), supports, max_step,
                               cell.candidate_weight, cell.candidate_bias, helpers))
    return u * h + (1 - u) * c


def test_dcgru_cell_matches_dense_reference(helpers):
    n, batch, cin, units, k = 9, 3, 2, 5, 2
    edge_index, edge_weight = helpers.make_graph(n, 20, seed=5)
    diffusion = Diffusion(random_walk_supports(edge_index, edge_weight, n), k).double()
    cell = DCGRUCell(cin, units, diffusion.num_terms).double()
    with torch.no_grad():
        cell.gate_bias.uniform_(-1, 1)  # make every parameter matter
        cell.candidate_bias.uniform_(-1, 1)
    x = torch.randn(batch, n, cin, dtype=torch.float64)
    h = torch.randn(batch, n, units, dtype=torch.float64)
    weights = cell.weights()
    node_major = dcgru_step(diffusion, input_part(diffusion, x.transpose(0, 1).contiguous(), weights),
                            h.transpose(0, 1).contiguous(), weights)
    dense = helpers.dense_random_walk(edge_index, edge_weight, n)
    torch.testing.assert_close(node_major.transpose(0, 1), dense_dcgru(x, h, dense, k, cell, helpers))


def dense_pgt_dconv(z, supports, conv):
    """PGT's DConv written out densely: per direction, order-0 weight too; T_k = 2 A T_{k-1} - X."""
    w = conv.weight
    out = z @ w[0, 0] + z @ w[1, 0]
    for direction, a in enumerate(supports):
        t1 = torch.einsum("ij,bjc->bic", a, z)
        out = out + t1 @ w[direction, 1]
        for k in range(2, w.shape[1]):
            t1 = 2 * torch.einsum("ij,bjc->bic", a, t1) - z
            out = out + t1 @ w[direction, k]
    return out + conv.bias


def test_pgt_cell_matches_dense_pgt_formula(helpers):
    n, batch, steps, channels = 7, 2, 4, 2
    edge_index, edge_weight = helpers.make_graph(n, 12, seed=6)
    model = PGTDCRNN(num_nodes=n, input_channels=channels, output_channels=channels, input_steps=steps,
                     output_steps=steps, edge_index=edge_index, edge_weight=edge_weight, K=4).double()
    supports = list(model.diffusion.first.to_dense().split(n))  # PGT's forward and reverse
    x = torch.randn(batch, steps, n, channels, dtype=torch.float64)
    h = torch.zeros(batch, n, channels, dtype=torch.float64)
    expected = []
    for t in range(steps):
        xh = torch.cat([x[:, t], h], -1)
        z = torch.sigmoid(dense_pgt_dconv(xh, supports, model.conv_x_z))
        r = torch.sigmoid(dense_pgt_dconv(xh, supports, model.conv_x_r))
        h_tilde = torch.tanh(dense_pgt_dconv(torch.cat([x[:, t], h * r], -1), supports, model.conv_x_h))
        h = z * h + (1 - z) * h_tilde
        expected.append(h)
    torch.testing.assert_close(model(x), torch.stack(expected, 1))


def test_input_parts_hoisted_and_step_by_step_agree(helpers, monkeypatch):
    """The whole-sequence (hoisted) input diffusion and the step-by-step one give the same parts;
    a sequence over the value bound goes step by step (what keeps full-PeMS evaluation small)."""
    from pgti.models import dcgru

    n, batch, cin, steps = 11, 4, 2, 5
    edge_index, edge_weight = helpers.make_graph(n, 25, seed=7)
    model = PGTDCRNN(num_nodes=n, input_channels=cin, output_channels=2, input_steps=steps, output_steps=steps,
                     edge_index=edge_index, edge_weight=edge_weight).double()
    weights = model.weights()
    seq = list(torch.randn(steps, n, batch, cin, dtype=torch.float64).unbind(0))
    seen = []
    real = dcgru.input_part
    monkeypatch.setattr(dcgru, "input_part", lambda d, x, w: (seen.append(x.dim()), real(d, x, w))[1])
    hoisted = list(dcgru.input_parts(model.diffusion, seq, weights))
    assert seen == [4]  # one call on [N, T, B, C]
    seen.clear()
    monkeypatch.setattr(dcgru, "_HOIST_MAX_VALUES", steps * batch * cin * n - 1)
    stepwise = list(dcgru.input_parts(model.diffusion, seq, weights))
    assert seen == [3] * steps  # one call per step on [N, B, C]
    for a, b in zip(hoisted, stepwise):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # without grad the bound is on the widest hoisted tensor, N * T * B * max(C * M, 3U)
    widest = n * steps * batch * max(cin * model.diffusion.num_terms, weights.x[0].shape[1])
    for bound, calls in ((widest, [4]), (widest - 1, [3] * steps)):
        monkeypatch.setattr(dcgru, "_HOIST_MAX_VALUES_NO_GRAD", bound)
        seen.clear()
        with torch.no_grad():
            list(dcgru.input_parts(model.diffusion, seq, weights))
        assert seen == calls
