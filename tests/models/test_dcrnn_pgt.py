"""dcrnn-pgt: PGT-I's parameter count and names (same function as PGT's BatchedDCRNN: tests/bench/test_reference.py)."""
import pytest
import torch

from pgti.models.dcrnn_pgt import PGTDCRNN


def build(graph, **kw):
    edge_index, edge_weight, n = graph
    args = dict(num_nodes=n, input_channels=2, output_channels=2, input_steps=12, output_steps=12,
                edge_index=edge_index, edge_weight=edge_weight)
    return PGTDCRNN(**{**args, **kw})


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


def test_hidden_channels_with_a_speed_only_forecast(graph):
    """hidden_channels=2 with one target: PGT-I's 150-parameter cell (speed + time of day in the
    hidden state), forecasting the first hidden channel."""
    model = build(graph, output_channels=1, hidden_channels=2, input_steps=5, output_steps=5)
    assert sum(p.numel() for p in model.parameters()) == 150
    assert model(torch.randn(3, 5, 8, 2)).shape == (3, 5, 8, 1)
    assert sum(p.numel() for p in build(graph, output_channels=1).parameters()) == 57  # default: hidden = 1
    with pytest.raises(ValueError, match="hidden_channels"):
        build(graph, output_channels=2, hidden_channels=1)
