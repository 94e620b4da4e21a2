"""`model.compile`: torch.compile (inductor) for the training step, compiled up front, with
one clean fallback to eager.

    compiled, failure = compile_model(model, probe)      # probe(module): forward + backward

`torch.compile` compiles lazily, at the first forward and (AOTAutograd) the first backward, so
a missing C++ compiler or an inductor error would surface in the middle of the first training
step, possibly on some ranks only, between the allreduces of a step. `compile_model` therefore
runs the probe (`probe_step`: two training steps' forward and backward, no optimizer step) on
the compiled module straight away: the random number generators and the buffers are restored
afterwards and the gradients dropped, so the run trains the same batches from the same state
as an eager one. If the probe raises, the module comes back uncompiled with the
reason (one line); the caller decides what to log and whether ranks must agree
(`pgti.train.session.compiled_for_run`: every rank trains eager when one failed).

What compiles into one graph: the models' dense work; the sparse graph products are the
operator `pgti::csr_matmul` (`pgti.models.sparse`), opaque to dynamo. Evaluation stays eager
(the bare module): other shapes and `eval()` would each compile again.

Numerics: inductor reorders floating-point work and draws dropout masks from its own
generator, so a compiled run is not bitwise equal to an eager one; a resumed compiled run is
deterministic like any other with one thread per rank, as long as `model.compile` is the same.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable

import torch


def compile_model(model: torch.nn.Module, probe: Callable[[torch.nn.Module], None],
                  device: torch.device | None = None, backend: str = "inductor") -> tuple[torch.nn.Module, str | None]:
    """`(torch.compile(model), None)` after a successful `probe`, else `(model, reason)`.

    `probe(module)` runs forward and backward; afterwards the RNG states of the CPU and of
    `device` (CUDA) and every buffer (batch norm's running statistics and batch count) are
    restored, and every parameter's `.grad` is set to None. `backend`: torch.compile's (the
    tests trace with "aot_eager", which needs no C++ compiler)."""
    from torch._dynamo.utils import counters

    counters.clear()  # graph_counts() reads this compile's
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        compiled = torch.compile(model, backend=backend)
        with preserved_rng(device), warnings.catch_warnings():
            # inductor's once-per-process advice about TF32 on Ampere+ GPUs: one line per rank
            warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores")
            probe(compiled)
    except Exception as exc:  # an inductor, dynamo or compiler failure: train eager
        torch._dynamo.reset()  # drop half-built caches: the eager module must not hit them
        return model, one_line(exc)
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        for p in model.parameters():
            p.grad = None
    return compiled, None


def graph_counts() -> tuple[int, int]:
    """`(graphs, graph breaks)` dynamo made in the last `compile_model` (a break: code that
    runs eager between two compiled graphs)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message` of the error that stopped the compile: the backend's
    own (dynamo wraps it as `BackendCompilerFailed: backend='inductor' raised:`)."""
    while getattr(exc, "inner_exception", None) is not None:
        exc = exc.inner_exception
    lines = [line.strip() for line in str(exc).strip().splitlines()]
    first = next((line for line in lines if line and not line.endswith("raised:")), "")
    return f"{type(exc).__name__}: {first}"[:300]


@contextlib.contextmanager
def preserved_rng(device: torch.device | None):
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device is not None and device.type == "cuda" else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)


def probe_step(x: torch.Tensor, y: torch.Tensor, global_step: int = 0, autocast: bool = False):
    """A probe for `compile_model`: forward on `(x, y)` (autocast to bfloat16 when asked) and
    the backward of the mean output, at `global_step` and at the next step: a model that reads
    the int (DCRNN's scheduled sampling) is compiled for it as a symbol (dynamo's automatic
    dynamic) now rather than again at the run's second step."""
    def probe(module: torch.nn.Module) -> None:
        for step in (global_step, global_step + 1):
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
                out = module(x, y, global_step=step)
            out.float().mean().backward()
    return probe
