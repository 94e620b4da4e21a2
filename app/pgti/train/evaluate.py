"""Evaluation: masked metrics of a model on a split, and `pgti evaluate RUN_DIR`.

Every rank scores its own shard of the split's windows; the metric sums are allreduced, so
the result equals a single-process evaluation (no per-batch collectives: shards may differ
in size). The last-value baseline (repeat the last observed reading for every horizon step)
is scored on the same windows, so a user sees at once whether the model learned anything.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from pgti.outputs import write_text_output
from pgti.train.metrics import MetricSums, format_table


def _allreduce(world, sums: MetricSums) -> MetricSums:
    from mpi4py import MPI

    flat = sums.to_numpy()
    total = np.empty_like(flat)
    world.comm.Allreduce(flat, total, op=MPI.SUM)
    return MetricSums.from_numpy(total, sums.horizon, sums.missing_value)


@torch.no_grad()
def evaluate_split(pipeline, model, split: str, batch_size: int, *, baseline: bool = False,
                   bf16: bool = False) -> dict:
    """Metrics of `model` (the bare module) on `split`; with `baseline`, also last-value's."""
    info, spec, scaler = pipeline.info, pipeline.spec, pipeline.scaler
    targets = spec.targets(info.num_channels)
    batches, _ = pipeline.eval_batches(split, batch_size)
    horizon = spec.output_steps
    sums = MetricSums(horizon, info.missing_value, pipeline.device)
    last = MetricSums(horizon, info.missing_value, pipeline.device) if baseline else None
    model.eval()
    for x, y, _ in batches:
        with torch.autocast(pipeline.device.type, dtype=torch.bfloat16, enabled=bf16 and pipeline.device.type == "cuda"):
            out = model(x)
        pred = scaler.inverse_transform(out.float(), channels=targets)
        sums.update(pred, y)
        if last is not None:
            last.update(last_value_forecast(x, spec, scaler, targets, info.num_channels, horizon), y)
    result = _allreduce(pipeline.world, sums).compute()
    if last is not None:
        result["last_value"] = _allreduce(pipeline.world, last).compute()
    return result


def last_value_forecast(x, spec, scaler, targets, num_channels, horizon):
    """The last input step's reading of each target channel, repeated over the horizon."""
    inputs = spec.inputs(num_channels)
    cols = [inputs.index(c) for c in targets]  # the target channels inside x
    last = x[:, -1:, :, cols]
    if spec.normalize_inputs and scaler is not None:
        last = scaler.inverse_transform(last, channels=targets)
    return last.expand(-1, horizon, -1, -1)


# --------------------------------------------------------------------------- the command (arguments: evaluate_cli)


def run(args) -> int:
    from pgti.distributed.world import abort_on_error, init_world
    from pgti.train.session import load_for_inference

    world = init_world()
    with abort_on_error(world):
        session = load_for_inference(args.run_dir, args.checkpoint, args.set, world, split=args.split)
        cfg = session.cfg
        batch = args.batch_size or cfg.train.eval_batch_size or cfg.train.batch_size
        metrics = evaluate_split(session.pipeline, session.model, args.split, batch, baseline=True)
        if world.rank == 0:
            title = (f"{args.split} metrics of {cfg.model.name} ({session.checkpoint_path.name}, "
                     f"epoch {session.state.get('epoch')}, step {session.state.get('global_step')}) "
                     f"on {metrics['count']:,} readings")
            print(format_table(metrics, session.pipeline.info.interval_seconds, metrics["last_value"], title=title))
            out = session.run_dir.path / f"metrics_{args.split}.json"
            write_text_output(out, json.dumps({"split": args.split, "checkpoint": str(session.checkpoint_path),
                                               **metrics}, indent=2) + "\n")
            print(f"wrote {out}")
    return 0
