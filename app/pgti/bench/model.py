"""`pgti bench model`: pgti's batched sparse models vs PGT-I style message passing.

    pgti bench model --model dcrnn-pgt --data pems-bay.h5 --batch-size 64 [--device cpu|cuda]
                     [--steps N] [--no-memory] [--compile] [--json FILE]

Times one training step (forward + backward) per batch and measures its peak memory for pgti's
implementation ("pgti" in the output and JSON) and for a reference ("pgt_i") that diffuses the
way PGT-I does (torch_geometric `MessagePassing` over `edge_index` replicated B times with node
offsets; see `pgti.bench.reference`), with the same weights, on the same batch of real windows. Before
timing it checks that both compute the same outputs (max |difference| <= 1e-4, judged in
float64; the float32 difference is reported too) and fails if not.
Models without a reference (a3tgcn, gwnet) are timed alone. Memory is measured as described in
`pgti.models.measure` (on CPU in a child process, so timings and memory do not disturb each other).
`--compile` times (and measures) pgti's model compiled as `model.compile = true` trains it
(`pgti.models.compiled`; the FLOPs are counted on the eager step, which does the same work);
the reference stays eager.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics

from pgti.bench.bounds import check_batch
from pgti.models.cli_args import add_model_arguments, model_setup
from pgti.models.registry import model_names
from pgti.outputs import add_force_argument, check_output, write_text_output

# model name -> (reference class in pgti.bench.reference, what it is)
REFERENCES = {
    "dcrnn-pgt": ("PGTBatchedDCRNN", "PGT-I's BatchedDCRNN: MessagePassing over edge_index replicated B times"),
    "dcrnn": ("MessagePassingDCRNN", "the same DCRNN with MessagePassing diffusion over replicated edge_index"),
}
TOLERANCE = 1e-4


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=model_names(), help=f"model: {', '.join(model_names())}")
    add_model_arguments(p)
    p.add_argument("--steps", type=int, default=3, help="timed steps per implementation (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    p.add_argument("--global-step", type=int, default=0,
                   help="global_step passed to the models (DCRNN scheduled sampling; default 0)")
    p.add_argument("--no-memory", dest="memory", action="store_false",
                   help="skip the memory measurement (on CPU it runs in a child process)")
    p.add_argument("--no-bound", dest="bound", action="store_false",
                   help="skip the FLOP count, GEMM rates, bound_fraction and profile (two more steps and ~1 s)")
    p.add_argument("--compile", action="store_true",
                   help="pgti's model compiled with torch.compile (inductor), as model.compile = true trains it")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    add_force_argument(p)


def _time(model, x, y, device, args) -> dict:
    from pgti.models.measure import time_step, training_step

    seconds = time_step(training_step(model, x, y, global_step=args.global_step), device, args.steps, args.warmup)
    return dict(seconds=seconds, mean_s=statistics.fmean(seconds), median_s=statistics.median(seconds),
                min_s=min(seconds), parameters=sum(p.numel() for p in model.parameters()))


def _memory(model, x, y, device, args, kwargs, reference: str | None, compiled: bool = False) -> dict:
    """Peak memory of `model`'s step (on CPU in a child that builds it again, compiled when asked)."""
    from pgti.models.measure import cpu_step_memory, cuda_step_memory, measure_request, training_step

    if not args.memory:
        return dict(peak_bytes=None, memory_method="not measured (--no-memory)")
    if device.type == "cuda":
        memory = cuda_step_memory(training_step(model, x, y, global_step=args.global_step), device)
    else:
        memory = cpu_step_memory(measure_request(model=args.model, data=args.data, kwargs=kwargs,
                                                 batch_size=args.batch_size, global_step=args.global_step,
                                                 reference=reference, compile=compiled))
    return dict(peak_bytes=memory.peak_bytes, memory_method=memory.method)


def _max_output_difference(pgti_model, reference, x, y, global_step) -> float:
    import torch

    outputs = []
    for model in (pgti_model, reference):
        torch.manual_seed(1234)  # the same scheduled-sampling coins for both
        with torch.no_grad():
            outputs.append(model(x, y, global_step=global_step))
    return float((outputs[0] - outputs[1]).abs().max())


def run(args) -> int:
    import torch

    from pgti.bench import reference as references
    from pgti.errors import EXIT_FAILURE, UserError
    from pgti.models.example import example_batch
    from pgti.models.measure import human_bytes
    from pgti.models.registry import build_model

    if args.steps < 1 or args.warmup < 0:
        raise UserError("--steps must be >= 1 and --warmup >= 0")
    if args.json:
        check_output(args.json, option="--json", force=args.force, reads=[getattr(args, "data", None)])
    setup = model_setup(args.model, args)
    info, device, kwargs = setup["info"], setup["device"], setup["kwargs"]
    check_batch(info, args.batch_size, input_steps=args.input_steps, output_steps=args.output_steps)
    torch.manual_seed(0)
    pgti_model = build_model(args.model, **kwargs).to(device).train()
    x, y = example_batch(info, batch_size=args.batch_size, input_steps=kwargs["input_steps"],
                         output_steps=kwargs["output_steps"], input_channels=kwargs["input_channels"],
                         output_channels=kwargs["output_channels"])
    x, y = x.to(device), y.to(device)
    threads = torch.get_num_threads() if device.type == "cpu" else None
    where = f"{device.type}" + (f" ({threads} threads)" if threads else f" ({torch.cuda.get_device_name(device)})")
    print(f"bench model  {args.model} on {info.name} (N={info.num_nodes}, E={info.num_edges}), "
          f"batch {args.batch_size}, x {list(x.shape)}, {where}")
    print(f"             {args.steps} timed training steps (forward + backward) after {args.warmup} warm-up")
    result = dict(model=args.model, dataset=str(info.path), dataset_name=info.name, num_nodes=info.num_nodes,
                  num_edges=info.num_edges, batch_size=args.batch_size, device=device.type, threads=threads,
                  input_shape=list(x.shape), steps=args.steps, warmup=args.warmup,
                  global_step=args.global_step, torch=torch.__version__, pgt_i=None)
    status = 0
    if args.model in REFERENCES:
        class_name, description = REFERENCES[args.model]
        reference = getattr(references, class_name)(**kwargs).to(device).train()
        reference.load_state_dict(pgti_model.state_dict())
        # Same function? Checked in float64, where the two implementations agree to rounding
        # (~1e-14); in float32 the recurrence amplifies rounding (weights perturbed by 1e-7
        # move dcrnn-pgt's outputs by ~1e-5), so that difference is reported, not judged.
        single = _max_output_difference(pgti_model, reference, x, y, args.global_step)
        double = _max_output_difference(copy.deepcopy(pgti_model).double(), copy.deepcopy(reference).double(),
                                        x.double(), y.double(), args.global_step)
        agree = double <= TOLERANCE
        result.update(max_abs_output_difference=double, max_abs_output_difference_float32=single,
                      outputs_agree=agree)
        print(f"outputs      max |pgti - pgt_i| = {double:.1e} in float64 "
              f"({'ok' if agree else 'MISMATCH'}, tolerance {TOLERANCE:g}); {single:.1e} in float32")
        if not agree:
            status = EXIT_FAILURE
    timed = _compiled(pgti_model, x, y, device, args, result) if args.compile else pgti_model
    compiled = timed is not pgti_model
    if args.compile and not compiled:
        status = EXIT_FAILURE  # asked for compiled figures: the eager ones below must not pass for them
    result["pgti"] = _time(timed, x, y, device, args)
    result["pgti"].update(_memory(timed, x, y, device, args, kwargs, None, compiled=compiled))
    _report("pgti", f"batched sparse ({type(pgti_model).__name__}{', compiled' if compiled else ''})",
            result["pgti"], human_bytes)
    if args.bound:
        from pgti.models.measure import training_step
        from pgti.models.roofline import bound_report, format_bound

        result["pgti"].update(bound_report(training_step(pgti_model, x, y, global_step=args.global_step), device,
                                           result["pgti"]["median_s"],
                                           profile_step=training_step(timed, x, y, global_step=args.global_step)))
        for line in format_bound(result["pgti"]):
            print(line)
    if args.model in REFERENCES:
        result["pgt_i"] = dict(class_name=class_name, description=description,
                               **_time(reference, x, y, device, args))
        result["pgt_i"].update(_memory(reference, x, y, device, args, kwargs, class_name))
        _report("pgt_i", description, result["pgt_i"], human_bytes)
        speedup = result["pgt_i"]["median_s"] / result["pgti"]["median_s"]
        result["speedup"] = speedup
        mem_pgti, mem_pgt_i = result["pgti"]["peak_bytes"], result["pgt_i"]["peak_bytes"]
        result["memory_ratio"] = mem_pgt_i / mem_pgti if mem_pgti and mem_pgt_i else None
        memory_text = f", {result['memory_ratio']:.1f}x less memory" if result["memory_ratio"] else ""
        print(f"speedup      {speedup:.1f}x per batch (median){memory_text}")
    else:
        print("pgt_i        none for this model (PGT-I style references exist for dcrnn, dcrnn-pgt)")
    print(f"memory       measured as: {result['pgti']['memory_method']}")
    if args.json:
        write_text_output(args.json, json.dumps(result, indent=2) + "\n", option="--json")
        print(f"json         {args.json}")
    return status


def _compiled(model, x, y, device, args, result: dict):
    """`model` compiled (or, where it cannot compile, itself), reported in `result["compile"]`."""
    import time

    from pgti.models.compiled import compile_model, graph_counts, probe_step

    began = time.perf_counter()
    compiled, failure = compile_model(model, probe_step(x, y, args.global_step), device)
    seconds = time.perf_counter() - began
    graphs, breaks = graph_counts()
    result["compile"] = dict(compiled=failure is None, seconds=seconds, failure=failure, graphs=graphs,
                             graph_breaks=breaks)
    print("compile      torch.compile (inductor): " + (
        f"compiled and probed in {seconds:.1f} s ({graphs} graph(s), {breaks} graph break(s))" if failure is None
        else f"failed ({failure}); timing eager"))
    return compiled


def _report(label: str, description: str, measured: dict, human_bytes) -> None:
    times = ", ".join(f"{s:.3f}" for s in measured["seconds"])
    print(f"{label:<12} {measured['median_s']:.3f} s/batch (median of {len(measured['seconds'])} timed steps: {times}), "
          f"peak {human_bytes(measured['peak_bytes'])}: {description}")
