"""On CUDA the models compute what they compute on the CPU (skipped without a GPU)."""
import pytest
import torch

from pgti.models.registry import build_model

pytestmark = pytest.mark.gpu

NAMES = ["dcrnn", "dcrnn-pgt", "a3tgcn", "gwnet"]


@pytest.fixture
def exact_cuda_math():
    """No TF32 in cuDNN convolutions / matmuls while comparing with the CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def build(name, helpers):
    edge_index, edge_weight = helpers.make_graph(30, 90, seed=1)
    cout = 2 if name == "dcrnn-pgt" else 1
    return build_model(name, num_nodes=30, input_channels=2, output_channels=cout, input_steps=12,
                       output_steps=12, edge_index=edge_index, edge_weight=edge_weight), cout


@pytest.mark.parametrize("name", NAMES)
def test_forward_on_cuda_matches_cpu(name, helpers, exact_cuda_math):
    torch.manual_seed(0)
    model, _ = build(name, helpers)
    model.eval()
    x = torch.randn(4, 12, 30, 2)
    expected = model(x)
    got = model.to("cuda")(x.to("cuda"))
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_training_step_on_cuda(name, helpers, exact_cuda_math):
    torch.manual_seed(0)
    model, cout = build(name, helpers)
    x, y = torch.randn(4, 12, 30, 2), torch.randn(4, 12, 30, cout)
    cpu_loss = (model.train()(x, y, global_step=10**7) - y).abs().mean()  # no teacher forcing
    cpu_loss.backward()
    cpu_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    model.to("cuda")
    torch.manual_seed(0)  # GWNet's dropout masks differ between devices: compare without it
    if name == "gwnet":
        return _check_finite_step(model, x.cuda(), y.cuda())
    loss = (model(x.cuda(), y.cuda(), global_step=10**7) - y.cuda()).abs().mean()
    loss.backward()
    torch.testing.assert_close(loss.cpu(), cpu_loss, rtol=1e-4, atol=1e-5)
    for p, g in zip(model.parameters(), cpu_grads):
        torch.testing.assert_close(p.grad.cpu(), g, rtol=1e-3, atol=1e-5)


def _check_finite_step(model, x, y):
    loss = (model(x, y) - y).abs().mean()
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_training_step_under_bf16_autocast_on_cuda(name, helpers):
    """`train.bf16`: the models' custom autograd Functions and mixed-dtype recurrences on CUDA."""
    from models.test_bf16 import bf16_step

    model, out, reference = bf16_step(name, helpers, device="cuda")
    grads = [p.grad for p in model.parameters() if p.grad is not None]  # gwnet's last gconv is unused, as upstream
    assert len(grads) >= 0.9 * len(list(model.parameters())) and all(torch.isfinite(g).all() for g in grads)
    assert (out.float() - reference).abs().max() <= 0.03 * reference.abs().max(), name
