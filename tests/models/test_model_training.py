"""Every model learns a small learnable signal, and training is reproducible from a seed."""
import pytest
import torch

from pgti.models.registry import build_model
from testlib import assert_bitwise_equal

SMALL_GWNET = dict(residual_channels=16, dilation_channels=16, skip_channels=32, end_channels=64)

# name, steps (input = output), learning rate, training steps, overrides
CASES = [
    ("dcrnn", 6, 1e-2, 30, dict(hidden_size=16)),
    ("dcrnn-pgt", 12, 3e-2, 30, {}),
    ("a3tgcn", 12, 3e-2, 80, {}),
    ("gwnet", 12, 3e-3, 30, SMALL_GWNET),
]


def build(name, steps, overrides, helpers):
    edge_index, edge_weight = helpers.make_graph(8, 16, seed=0)
    cout = 2 if name == "dcrnn-pgt" else 1
    model = build_model(name, num_nodes=8, input_channels=2, output_channels=cout, input_steps=steps,
                        output_steps=steps, edge_index=edge_index, edge_weight=edge_weight, **overrides)
    x, y = helpers.windows(helpers.sinusoid_series(8, 200, edge_index, edge_weight), steps, steps)
    return model, x, y, cout


@pytest.mark.parametrize("name, steps, lr, train_steps, overrides", CASES, ids=[c[0] for c in CASES])
def test_training_loss_drops(name, steps, lr, train_steps, overrides, helpers):
    torch.manual_seed(0)
    model, x, y, cout = build(name, steps, overrides, helpers)
    losses = helpers.train_losses(model, x, y, steps=train_steps, lr=lr, output_channels=cout)
    final = sum(losses[-5:]) / 5
    assert final < 0.5 * losses[0], f"{name}: loss {losses[0]:.3f} -> {final:.3f}"


@pytest.mark.parametrize("name", [c[0] for c in CASES])  # incl. scheduled-sampling coins, dropout
def test_same_seed_same_parameters(name, helpers):
    case = next(c for c in CASES if c[0] == name)

    def trained():
        torch.manual_seed(7)
        model, x, y, cout = build(name, case[1], case[4], helpers)
        helpers.train_losses(model, x, y, steps=4, lr=case[2], output_channels=cout)
        return model.state_dict()

    first, second = trained(), trained()
    assert_bitwise_equal(first, second)
    torch.manual_seed(8)
    other, *_ = build(name, case[1], case[4], helpers)
    assert not all(torch.equal(first[k], v) for k, v in other.state_dict().items() if v.is_floating_point())
