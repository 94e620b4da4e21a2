"""The model registry: names, builder, documented defaults."""
import pytest
import torch

from pgti.errors import UserError
from pgti.models.registry import MODELS, build_model, count_parameters, get_spec


def build(name, graph, **kw):
    edge_index, edge_weight, n = graph
    cout = 2 if name == "dcrnn-pgt" else 1
    return build_model(name, num_nodes=n, input_channels=2, output_channels=cout, input_steps=12,
                       output_steps=12, edge_index=edge_index.numpy(), edge_weight=edge_weight.numpy(), **kw)


@pytest.mark.parametrize("name", ["dcrnn", "dcrnn-pgt", "a3tgcn", "gwnet"])
def test_every_model_builds_and_has_the_documented_shape(name, graph):
    model = build(name, graph)
    x = torch.randn(2, 12, 8, 2)
    out = model(x, None, global_step=None)
    cout = 2 if name == "dcrnn-pgt" else 1
    assert out.shape == (2, 12, 8, cout)
    spec = get_spec(name)
    assert spec.paper and spec.shapes and spec.summary
    assert spec.training.batch_size == 64 and spec.training.input_steps == 12


def test_registered_names():
    assert set(MODELS) == {"dcrnn", "dcrnn-pgt", "a3tgcn", "gwnet"}


def test_dcrnn_defaults_are_the_papers():
    spec = get_spec("dcrnn")
    assert spec.hyperparameters == dict(hidden_size=64, num_layers=2, max_diffusion_step=2,
                                        use_curriculum_learning=True, cl_decay_steps=2000)
    t = spec.training
    assert (t.optimizer, t.learning_rate, t.adam_eps, t.lr_milestones, t.lr_decay, t.grad_clip_norm,
            t.batch_size, t.input_steps, t.output_steps) == ("adam", 0.01, 1e-3, (20, 30, 40, 50), 0.1, 5.0, 64, 12, 12)


def test_overrides_and_mistakes(graph):
    assert count_parameters(build("dcrnn-pgt", graph)) == 150
    small = build("dcrnn", graph, hidden_size=4, num_layers=1)
    assert small.hidden_size == 4 and len(small.encoder) == 1
    with pytest.raises(UserError, match="unknown model"):
        get_spec("stgcn")
    with pytest.raises(UserError, match="no hyper-parameter 'units'"):
        build("dcrnn", graph, units=3)
    with pytest.raises(UserError, match="output_steps"):
        build_model("dcrnn-pgt", num_nodes=8, input_channels=2, output_channels=2, input_steps=12,
                    output_steps=3, edge_index=graph[0], edge_weight=graph[1])
