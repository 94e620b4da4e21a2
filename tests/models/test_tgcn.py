"""The T-GCN cell against a dense reference computation."""
import torch

from pgti.models.graph import gcn_support
from pgti.models.tgcn import TGCNCell


def test_tgcn_cell_matches_dense_reference(helpers):
    n, batch, cin, units = 8, 3, 2, 4
    edge_index, edge_weight = helpers.make_graph(n, 14, seed=7, self_loops=False)
    support = gcn_support(edge_index, edge_weight, n).to(dtype=torch.float64)
    a = support.to_dense()
    cell = TGCNCell(cin, units).double()
    with torch.no_grad():
        cell.gate_bias.uniform_(-1, 1)
    x = torch.randn(batch, n, cin, dtype=torch.float64)
    h = torch.randn(batch, n, units, dtype=torch.float64)

    def conv(z, w, b):  # A [X, H] W + b over nodes, for every sample
        return torch.einsum("ij,bjc->bic", a, z) @ w + b

    gates = torch.sigmoid(conv(torch.cat([x, h], -1), cell.gate_weight, cell.gate_bias))
    r, u = gates[..., :units], gates[..., units:]
    c = torch.tanh(conv(torch.cat([x, r * h], -1), cell.candidate_weight, cell.candidate_bias))
    expected = u * h + (1 - u) * c
    got = cell(support, x.transpose(0, 1).contiguous(), h.transpose(0, 1).contiguous()).transpose(0, 1)
    torch.testing.assert_close(got, expected)
