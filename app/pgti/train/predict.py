"""`pgti predict RUN_DIR --out preds.h5`: stream a split's forecasts to HDF5, batch by batch.

Output (one row per window, in window order; nothing is concatenated in memory):
  /prediction     float32 [S, Tout, N, Cy]  de-normalized, in the data's units
  /target         float32 [S, Tout, N, Cy]  the readings (missing ones = missing_value)
  /timestamps     int64   [S, Tout]         unix seconds of each forecast step
  /window_start   int64   [S]               the window's first input step
  attrs: run_dir, checkpoint, split, model, channels, missing_value, interval_seconds
Runs as one process (it writes one file).
"""
from __future__ import annotations

import h5py
import numpy as np
import torch

from pgti.errors import UserError
from pgti.outputs import atomic_output, check_output


@torch.no_grad()
def run(args) -> int:
    from pgti.distributed.world import abort_on_error, init_world
    from pgti.train.session import inputs_of_run, load_for_inference

    world = init_world()
    with abort_on_error(world):
        if world.size > 1:
            raise UserError("pgti predict writes one file: run it as a single process (no mpirun)")
        out = check_output(args.out, force=args.force, reads=inputs_of_run(args.run_dir, args.set, args.checkpoint))
        session = load_for_inference(args.run_dir, args.checkpoint, args.set, world, split=args.split)
        pipeline, cfg = session.pipeline, session.cfg
        info, spec, scaler = pipeline.info, pipeline.spec, pipeline.scaler
        targets = spec.targets(info.num_channels)
        batch = args.batch_size or cfg.train.eval_batch_size or cfg.train.batch_size
        batches, starts = pipeline.eval_batches(args.split, batch)
        count, horizon = len(starts), spec.output_steps
        shape = (count, horizon, info.num_nodes, len(targets))
        chunk = (min(max(count, 1), 64), horizon, info.num_nodes, len(targets))
        with atomic_output(out) as tmp:
            with h5py.File(tmp, "w") as f:
                pred_ds = f.create_dataset("prediction", shape, "float32", chunks=chunk)
                target_ds = f.create_dataset("target", shape, "float32", chunks=chunk)
                ts_ds = f.create_dataset("timestamps", (count, horizon), "int64")
                f.create_dataset("window_start", data=np.asarray(starts, dtype=np.int64))
                f.attrs.update(run_dir=str(session.run_dir.path), checkpoint=str(session.checkpoint_path),
                               split=args.split, model=cfg.model.name,
                               channels=[info.channels[c] for c in targets], missing_value=info.missing_value,
                               interval_seconds=info.interval_seconds)
                row = 0
                for x, y, window_starts in batches:
                    pred = scaler.inverse_transform(session.model(x).float(), channels=targets)
                    n = pred.shape[0]
                    pred_ds[row:row + n] = pred.cpu().numpy()
                    target_ds[row:row + n] = y.cpu().numpy()
                    first = window_starts.cpu().numpy() + pipeline.arrays[args.split].attrs["t0"] + spec.input_steps
                    ts_ds[row:row + n] = info.timestamps[first[:, None] + np.arange(horizon)]
                    row += n
        print(f"wrote {count:,} {args.split} forecasts [{count}, {horizon}, {info.num_nodes}, {len(targets)}] to {out}")
    return 0
