"""pgti.models.activations: the hot paths' pointwise pieces give torch's own values and gradients."""
import pytest
import torch

from pgti.models.activations import gru_gates, tanh


def test_tanh_matches_torch_to_float_rounding_with_torchs_backward():
    x = torch.linspace(-20, 20, 100001, requires_grad=True)
    y = tanh(x)
    exact = torch.tanh(x.detach().double())
    assert (y.detach().double() - exact).abs().max() < 4e-7  # 1.8e-7 here; torch's own float32 tanh: 3.1e-8
    assert torch.equal(tanh(torch.zeros(3)), torch.zeros(3)) and tanh(torch.tensor([40.0])).item() == 1.0
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, 1 - y.detach() ** 2)
    assert torch.autograd.gradcheck(tanh, torch.randn(7, dtype=torch.float64, requires_grad=True))


@pytest.mark.parametrize("combined", [True, False], ids=["one-pre-activation", "two-pre-activations"])
def test_gru_gates_equal_sigmoid_split_and_pass_gradcheck(combined):
    torch.manual_seed(0)
    n, b, u = 4, 3, 5
    h = torch.randn(n, b, u, dtype=torch.float64, requires_grad=True)
    if combined:
        pre = (torch.randn(n, b, 2 * u, dtype=torch.float64, requires_grad=True),)
        reset, update = torch.sigmoid(pre[0]).split(u, dim=-1)
    else:
        pre = tuple(torch.randn(n * b, u, dtype=torch.float64, requires_grad=True) for _ in range(2))
        reset, update = (torch.sigmoid(p).view(n, b, u) for p in pre)
    got_update, got_reset_h = gru_gates(pre[0], h, *pre[1:])
    torch.testing.assert_close(got_update, update)
    torch.testing.assert_close(got_reset_h, reset * h)
    assert torch.autograd.gradcheck(lambda h, *p: gru_gates(p[0], h, *p[1:]), (h, *pre))
