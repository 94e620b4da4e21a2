"""dcrnn-pgt: PGT-I's parameter count and names, same function as PGT's BatchedDCRNN."""
import pytest
import torch

from pgti.models.dcrnn_pgt import PGTDCRNN
from pgti.models.reference import PGTBatchedDCRNN


def build(graph, cls=PGTDCRNN, **kw):
    edge_index, edge_weight, n = graph
    args = dict(num_nodes=n, input_channels=2, output_channels=2, input_steps=12, output_steps=12,
                edge_index=edge_index, edge_weight=edge_weight)
    return cls(**{**args, **kw})


def test_parameter_count_and_names_are_pgts(graph):
    model = build(graph)
    assert sum(p.numel() for p in model.parameters()) == 150
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {f"conv_x_{g}.{p}": s for g in "zrh"
                      for p, s in (("weight", (2, 3, 4, 2)), ("bias", (2,)))}


def test_output_is_one_hidden_state_per_input_step(graph):
    model = build(graph)
    assert model(torch.randn(3, 12, 8, 2)).shape == (3, 12, 8, 2)
    with pytest.raises(ValueError, match="output_steps"):
        build(graph, output_steps=6)


@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_matches_pgt_batched_dcrnn(graph, K):
    torch.manual_seed(K)
    ours = build(graph, K=K, input_steps=5, output_steps=5)
    reference = build(graph, cls=PGTBatchedDCRNN, K=K)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(4, 5, 8, 2)
    a, b = ours(x), reference(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    a.square().sum().backward(), b.square().sum().backward()
    for (name, p), q in zip(ours.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_pgt_is_hidden_size_with_a_speed_only_forecast(graph):
    """hidden_channels=2 with one target: PGT-I's 150-parameter cell (speed + time of day in the
    hidden state), forecasting the first hidden channel, equal to PGT's full output's channel 0."""
    torch.manual_seed(0)
    ours = build(graph, output_channels=1, hidden_channels=2, input_steps=5, output_steps=5)
    assert sum(p.numel() for p in ours.parameters()) == 150
    reference = build(graph, cls=PGTBatchedDCRNN, input_steps=5, output_steps=5)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, 8, 2)
    out = ours(x)
    assert out.shape == (3, 5, 8, 1)
    torch.testing.assert_close(out, reference(x)[..., :1], rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in build(graph, output_channels=1).parameters()) == 57  # default: hidden = 1
    with pytest.raises(ValueError, match="hidden_channels"):
        build(graph, output_channels=2, hidden_channels=1)


def test_reference_leaves_no_template_file_in_tmp(tmp_path):
    """torch_geometric writes the rendered `propagate` to a temp file it never deletes; the
    reference removes it once imported (it piled up in /tmp, one per process)."""
    import os
    import subprocess
    import sys

    code = ("import torch; from pgti.models.reference import EdgePropagation; e = EdgePropagation(); "
            "print(e(torch.ones(3, 2), torch.tensor([[0, 1], [1, 2]]), torch.ones(2)).sum().item())")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TMPDIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "4.0"  # the template still worked
    assert not list(tmp_path.glob("*EdgePropagation_propagate*"))
