"""`pgti info model NAME --data FILE`: parameter count and one-batch memory of a model.

Builds the model for the dataset's graph, runs one training step (forward + backward) on a
batch of real windows and prints the parameter count, the shapes, the published training
defaults and the peak memory of the step, with how that memory was measured.
"""
from __future__ import annotations

import argparse

from pgti.models.cli_args import add_model_arguments, model_setup
from pgti.models.registry import model_names


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=model_names(), metavar="NAME", help=f"model: {', '.join(model_names())}")
    add_model_arguments(p)


def run(args) -> int:
    import torch

    from pgti.models.example import example_batch
    from pgti.models.measure import cpu_step_memory, cuda_step_memory, human_bytes, measure_request, training_step
    from pgti.models.registry import build_model, count_parameters, get_spec

    setup = model_setup(args.name, args)
    info, device, kwargs = setup["info"], setup["device"], setup["kwargs"]
    spec = get_spec(args.name)
    torch.manual_seed(0)
    model = build_model(args.name, **kwargs).to(device).train()
    x, y = example_batch(info, batch_size=args.batch_size, input_steps=kwargs["input_steps"],
                         output_steps=kwargs["output_steps"], input_channels=kwargs["input_channels"],
                         output_channels=kwargs["output_channels"])
    if device.type == "cuda":
        step = training_step(model, x.to(device), y.to(device), global_step=0)
        out = step()  # warm-up: lazy initialization is not the model's memory
        memory = cuda_step_memory(step, device)
    else:
        with torch.no_grad():
            out = model(x)
        memory = cpu_step_memory(measure_request(model=args.name, data=args.data, kwargs=kwargs,
                                                 batch_size=args.batch_size, global_step=0))
    parameters = count_parameters(model)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    hyper = {**spec.hyperparameters, **{k: v for k, v in kwargs.items() if k in spec.hyperparameters}}
    print(f"model        {spec.name}  ({type(model).__name__}): {spec.summary}")
    print(f"paper        {spec.paper}")
    print(f"dataset      {info.name}  ({info.path}): N={info.num_nodes}, E={info.num_edges}")
    print(f"shapes       x {list(x.shape)} -> {list(out.shape)}   [B, T, N, C]")
    print(f"parameters   {parameters:,}  ({human_bytes(param_bytes)}; with gradients and Adam state "
          f"~{human_bytes(4 * param_bytes)})")
    print(f"hyper        {', '.join(f'{k}={v}' for k, v in hyper.items()) or '-'}")
    from pgti.recipe import published_values

    recipe, source = published_values(spec.name)  # as config keys: what --set takes
    print(f"recipe       {', '.join(f'{k}={v}' for k, v in recipe.items())}")
    print(f"             ({source}; the keys a config leaves unset)")
    print(f"memory       {human_bytes(memory.peak_bytes)} peak for one batch of {args.batch_size}, "
          f"forward + backward, on {device.type}")
    print(f"             measured as: {memory.method}")
    return 0
