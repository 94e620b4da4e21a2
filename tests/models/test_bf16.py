"""Every model trains under bfloat16 autocast (`train.bf16`): forward and backward run, the
gradients are finite, and the forecast stays within bfloat16's rounding of the float32 one.
On the CPU here (autocast casts the same out-of-place ops on both devices; pgti itself enables
it on CUDA only), and on CUDA in tests/models/test_model_gpu.py. Until this test, every model
raised under autocast: in-place `addmm_` and `lerp` do not cast their operands."""
import pytest
import torch

from pgti.models.registry import build_model

NAMES = ["dcrnn", "dcrnn-pgt", "a3tgcn", "gwnet"]


def bf16_step(name, helpers, device="cpu"):
    edge_index, edge_weight = helpers.make_graph(8, 16, seed=0)
    cout = 2 if name == "dcrnn-pgt" else 1
    torch.manual_seed(0)
    model = build_model(name, num_nodes=8, input_channels=2, output_channels=cout, input_steps=12,
                        output_steps=12, edge_index=edge_index, edge_weight=edge_weight).train().to(device)
    x, y = torch.randn(3, 12, 8, 2, device=device), torch.randn(3, 12, 8, 2, device=device)
    torch.manual_seed(1)
    with torch.autocast(device, dtype=torch.bfloat16):
        out = model(x, y, global_step=0)
    out.float().abs().mean().backward()
    torch.manual_seed(1)  # the same dropout masks and scheduled-sampling coins
    with torch.no_grad():
        reference = model(x, y, global_step=0)
    return model, out, reference


@pytest.mark.parametrize("name", NAMES)
def test_a_training_step_under_bf16_autocast(name, helpers):
    model, out, reference = bf16_step(name, helpers)
    assert out.dtype in (torch.bfloat16, torch.float32) and out.shape == reference.shape
    grads = [p.grad for p in model.parameters() if p.grad is not None]  # gwnet's last gconv is unused, as upstream
    assert len(grads) >= 0.9 * len(list(model.parameters())) and all(torch.isfinite(g).all() for g in grads)
    # bfloat16 keeps 8 bits of mantissa: ~0.4% per rounding, a few % over a deep recurrence
    assert (out.float() - reference).abs().max() <= 0.03 * reference.abs().max(), name
