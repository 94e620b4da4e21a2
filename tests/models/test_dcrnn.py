"""DCRNN: shapes, the paper's size, scheduled sampling (agreement with message passing: tests/bench/test_reference.py)."""
import math

import pytest
import torch

from pgti.models.dcrnn import DCRNN, sampling_probability


def small_dcrnn(graph, **kw):
    edge_index, edge_weight, n = graph
    args = dict(num_nodes=n, input_channels=2, output_channels=1, input_steps=4, output_steps=3,
                edge_index=edge_index, edge_weight=edge_weight, hidden_size=6)
    return DCRNN(**{**args, **kw})


def test_output_shape(graph):
    model = small_dcrnn(graph)
    assert model(torch.randn(5, 4, 8, 2)).shape == (5, 3, 8, 1)


def test_metr_la_configuration_has_the_papers_parameter_count(graph):
    edge_index, edge_weight, _ = graph
    model = DCRNN(num_nodes=8, input_channels=2, output_channels=1, input_steps=12, output_steps=12,
                  edge_index=edge_index, edge_weight=edge_weight)
    assert sum(p.numel() for p in model.parameters()) == 372_353


def test_sampling_probability_is_inverse_sigmoid():
    assert sampling_probability(0, 2000) == pytest.approx(2000 / 2001)
    assert sampling_probability(2000 * math.log(2000), 2000) == pytest.approx(0.5)
    assert sampling_probability(10**9, 2000) == 0.0


def test_scheduled_sampling_uses_targets_only_in_training(graph):
    torch.manual_seed(0)
    model = small_dcrnn(graph)
    x, y1, y2 = torch.randn(2, 4, 8, 2), torch.randn(2, 3, 8, 1), torch.randn(2, 3, 8, 1)

    def run(y, step):
        torch.manual_seed(1)  # same coins for both runs
        return model(x, y, global_step=step)

    model.train()
    # Early in training the truth is fed (p ~ 1): the outputs after step 0 depend on y.
    out1, out2 = run(y1, 0), run(y2, 0)
    torch.testing.assert_close(out1[:, 0], out2[:, 0])  # first step sees only the GO symbol
    assert not torch.allclose(out1[:, 1:], out2[:, 1:])
    # Late in training (p ~ 0) the model feeds back its own predictions.
    torch.testing.assert_close(run(y1, 10**7), run(y2, 10**7))
    torch.testing.assert_close(run(y1, 10**7), model(x))
    # Evaluation never looks at the targets, whatever the step.
    model.eval()
    torch.testing.assert_close(run(y1, 0), run(y2, 0))
    torch.testing.assert_close(run(y1, 0), model(x))


def test_training_with_targets_needs_global_step(graph):
    model = small_dcrnn(graph).train()
    with pytest.raises(ValueError, match="global_step"):
        model(torch.randn(1, 4, 8, 2), torch.randn(1, 3, 8, 1))


def test_no_curriculum_ignores_targets(graph):
    model = small_dcrnn(graph, use_curriculum_learning=False).train()
    x = torch.randn(2, 4, 8, 2)
    torch.testing.assert_close(model(x, torch.randn(2, 3, 8, 1), global_step=0), model(x))
