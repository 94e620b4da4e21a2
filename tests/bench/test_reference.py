"""PGT-I style reference models (app/pgti/bench/reference.py): the same functions as pgti's models."""
import os
import subprocess
import sys

import pytest
import torch

from pgti.bench.reference import EdgePropagation, MessagePassingDCRNN, PGTBatchedDCRNN, pgt_directions
from pgti.models.dcrnn import DCRNN
from pgti.models.dcrnn_pgt import PGTDCRNN
from pgti.models.graph import pgt_supports

pytestmark = pytest.mark.usefixtures("one_thread")  # and `graph`: both from tests/conftest.py


def small_dcrnn(graph, cls, **kw):
    edge_index, edge_weight, n = graph
    args = dict(num_nodes=n, input_channels=2, output_channels=1, input_steps=4, output_steps=3,
                edge_index=edge_index, edge_weight=edge_weight, hidden_size=6)
    return cls(**{**args, **kw})


def build_pgt(graph, cls, **kw):
    edge_index, edge_weight, n = graph
    args = dict(num_nodes=n, input_channels=2, output_channels=2, input_steps=12, output_steps=12,
                edge_index=edge_index, edge_weight=edge_weight)
    return cls(**{**args, **kw})


def test_dcrnn_matches_message_passing_reference(graph):
    torch.manual_seed(0)
    pgti_model = small_dcrnn(graph, DCRNN, num_layers=2, max_diffusion_step=3)
    reference = small_dcrnn(graph, MessagePassingDCRNN, num_layers=2, max_diffusion_step=3)
    reference.load_state_dict(pgti_model.state_dict())
    x, y = torch.randn(3, 4, 8, 2), torch.randn(3, 3, 8, 1)
    for mode in ("eval", "train"):
        getattr(pgti_model, mode)(), getattr(reference, mode)()
        torch.manual_seed(2)
        a = pgti_model(x, y, global_step=1500)
        torch.manual_seed(2)
        b = reference(x, y, global_step=1500)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    a.sum().backward(), b.sum().backward()
    for (name, p), q in zip(pgti_model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("K", [1, 2, 3, 4])
def test_dcrnn_pgt_matches_pgt_batched_dcrnn(graph, K):
    torch.manual_seed(K)
    pgti_model = build_pgt(graph, PGTDCRNN, K=K, input_steps=5, output_steps=5)
    reference = build_pgt(graph, PGTBatchedDCRNN, K=K)
    reference.load_state_dict(pgti_model.state_dict())
    x = torch.randn(4, 5, 8, 2)
    a, b = pgti_model(x), reference(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    a.square().sum().backward(), b.square().sum().backward()
    for (name, p), q in zip(pgti_model.named_parameters(), reference.parameters()):
        # float32 sums over 5 steps x K hops: an element's rounding scales with the largest
        # gradient of its tensor (up to ~180 here), not with its own size
        scale = max(1.0, q.grad.abs().max().item())
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=2e-6 * scale, msg=name)


def test_speed_only_forecast_is_channel_0_of_pgts_output(graph):
    """hidden_channels=2 with one target forecasts the first hidden channel: PGT's full output's channel 0."""
    torch.manual_seed(0)
    pgti_model = build_pgt(graph, PGTDCRNN, output_channels=1, hidden_channels=2, input_steps=5, output_steps=5)
    reference = build_pgt(graph, PGTBatchedDCRNN, input_steps=5, output_steps=5)
    reference.load_state_dict(pgti_model.state_dict())
    x = torch.randn(3, 5, 8, 2)
    torch.testing.assert_close(pgti_model(x), reference(x)[..., :1], rtol=1e-5, atol=1e-6)


def test_pgt_supports_equal_pgt_message_passing(graph):
    """The CSR matrices reproduce PGT's propagate() with its norms, edge order quirk included."""
    edge_index, edge_weight, n = graph
    x = torch.randn(n, 3)
    propagate = EdgePropagation()
    for support, (index, norm) in zip(pgt_supports(edge_index, edge_weight, n),
                                      pgt_directions(edge_index, edge_weight, n)):
        torch.testing.assert_close(support.matmul(x), propagate(x, index, norm))


def test_reference_leaves_no_template_file_in_tmp(tmp_path):
    """torch_geometric writes the rendered `propagate` to a temp file it never deletes; the
    reference removes it once imported (it piled up in /tmp, one per process)."""
    code = ("import torch; from pgti.bench.reference import EdgePropagation; e = EdgePropagation(); "
            "print(e(torch.ones(3, 2), torch.tensor([[0, 1], [1, 2]]), torch.ones(2)).sum().item())")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "TMPDIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "4.0"  # the template still worked
    assert not list(tmp_path.glob("*EdgePropagation_propagate*"))
