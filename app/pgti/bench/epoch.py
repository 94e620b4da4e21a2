"""`pgti bench epoch`: end-to-end training throughput, pgti's pipeline vs PGT-I's, one dataset and model.

    pgti bench epoch --data FILE --model dcrnn-pgt|dcrnn [--batch-size 64] [--steps 5] [--warmup 1]
                     [--device cpu|cuda] [--threads T] [--json FILE]

Two complete training pipelines are built in one process on the same dataset, from the same
initial weights, and trained for the same number of steps on the same batches (same split,
train-only scaler and shuffle order), with the model's published optimizer settings and the
masked MAE in data units (`pgti.train.metrics.masked_mae_loss`):

- pgti: `IndexBatcher` gathers a batch from the one float32 raw array in one vectorized call
  (as `pgti train` does on a CPU, here without the prefetch thread, so every step pays its own
  gather: conservative for pgti), and `pgti.train.step.train_step` trains on it: the step
  `pgti train` runs (its optimizer from `make_optimizer`, its scheduler, the single-process
  engine), on the batched sparse-diffusion model from `pgti.models.registry.build_model`;
- pgt_i (PGT-I): PGT-I's `IndexDataset` reproduced from its method (`pgti.bench.baselines`:
  one float64 array, a per-sample `__getitem__` and the default `DataLoader` collate, x and y
  both with every feature, cast to float32 after collation) and message passing over edges
  replicated B times (`pgti.bench.reference`: `PGTBatchedDCRNN` for dcrnn-pgt,
  `MessagePassingDCRNN` for dcrnn), which load pgti's state_dict, trained by PGT-I's step
  (Adam, clip, step).

dcrnn-pgt runs PGT-I's configuration: C_in = C_out = 2 (speed, time of day), K = 3, 150
parameters; the loss scores the speed channel (PGT-I's scripts also score the time-of-day
channel their model echoes; that changes no timing). dcrnn is the paper's DCRNN (2 x 64 DCGRU,
K = 2, scheduled sampling; C_in = 2, C_out = 1). PGT-I's targets are standardized; they are
turned back into data units in the float64 they are held in, and a value within rounding of
the missing value is the missing value again, so both pipelines score the same readings.

The steps of the two pipelines are interleaved (pgti, pgt_i, pgt_i, pgti, ...), so a busy
spell on a shared machine slows both alike; after `--warmup` untimed steps each, the median of
`--steps` timed steps is a pipeline's time per step: batch loading + forward + loss + backward +
optimizer step. Samples/s = B / median; epoch time = median step time x steps per epoch (train
windows // B): an extrapolation from the timed steps, not a timed epoch. The losses of both
pipelines are recorded step by step (they agree to float rounding at step 1, then drift apart
slowly as rounding differences accumulate).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from pgti.allocator import configure_allocator
from pgti.bench.bounds import at_least, check_batch
from pgti.bench.format import dur, pyplot, save_figure
from pgti.bench.machine import sync
from pgti.errors import UserError
from pgti.outputs import add_force_argument, check_output, write_text_output

MODELS = ("dcrnn-pgt", "dcrnn")
LABELS = {"pgti": "pgti: IndexBatcher + batched sparse diffusion, trained by pgti train's train_step",
          "pgt_i": "PGT-I: per-sample float64 DataLoader + replicated-edge message passing"}
REFERENCES = {"dcrnn-pgt": "PGTBatchedDCRNN", "dcrnn": "MessagePassingDCRNN"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="pgti dataset file (HDF5)")
    p.add_argument("--model", choices=MODELS, default="dcrnn-pgt", help="model (default dcrnn-pgt)")
    p.add_argument("--batch-size", type=int, default=64, help="windows per batch (default 64, PGT-I's)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps per pipeline (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per pipeline first (default 1)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cpu, or cuda: GPU-index-batching (raw array on the GPU) vs PGT-I's GPU path")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: the cores not kept busy by other work, >= 1)")
    p.add_argument("--seed", type=int, default=0, help="weights and shuffle seed")
    p.add_argument("--json", help="also write the result as JSON")
    add_force_argument(p)


def run(args) -> int:
    if not Path(args.data).exists():
        raise UserError(f"{args.data}: no such file; make one with `pgti data synth --preset metr-la --out FILE`")
    at_least("--steps", args.steps)
    at_least("--warmup", args.warmup, 0)
    at_least("--threads", args.threads)
    check_batch(args.data, args.batch_size)
    if args.json:
        check_output(args.json, option="--json", force=args.force, reads=[args.data])
    result = measure(args.data, args.model, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                     device=args.device, threads=args.threads, seed=args.seed)
    print(format_result(result))
    if args.json:
        write_text_output(args.json, json.dumps(result, indent=2) + "\n", option="--json")
    return 0


# --------------------------------------------------------------------------- the two pipelines


class _Setup:
    """What both pipelines share: dataset, split, scaler, window spec and model arguments."""

    def __init__(self, data, model: str, batch_size: int, device, seed: int):
        import torch

        from pgti.data.format import open_dataset
        from pgti.data.scaler import Scaler
        from pgti.data.splits import make_splits
        from pgti.data.windows import WindowSpec, read_series

        self.info = info = open_dataset(data)
        self.model_name, self.batch_size, self.seed = model, batch_size, seed
        self.device = torch.device(device)
        self.spec = WindowSpec(12, 12, target_channels=(0,), time_of_day=True)
        self.targets = self.spec.targets(info.num_channels)
        self.signals = read_series(info)  # float32 [T, N, C] host tensor
        self.train = make_splits(info.num_steps)["train"]
        if len(self.train) < batch_size:
            raise UserError(f"{data}: {len(self.train)} training windows, fewer than one batch of {batch_size}")
        self.scaler = Scaler.fit(self.signals, self.train, missing_value=info.missing_value)
        x_channels = self.spec.x_channels(info.num_channels)
        self.kwargs = dict(num_nodes=info.num_nodes, input_channels=x_channels,
                           output_channels=x_channels if model == "dcrnn-pgt" else len(self.targets),
                           input_steps=12, output_steps=12, edge_index=info.edge_index,
                           edge_weight=info.edge_weight)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train) // self.batch_size


class TimedPipeline:
    """One training pipeline: `step(k)` loads batch k and trains on it, timing both."""

    def __init__(self, name: str, setup: _Setup, model, batches):
        self.name, self.setup, self.model = name, setup, model.to(setup.device).train()
        self.batches = batches
        self.losses: list[float] = []
        self.step_seconds: list[float] = []
        self.load_seconds: list[float] = []

    def step(self, k: int, timed: bool) -> float:
        import torch

        sync(self.setup.device)
        began = time.perf_counter()
        x, y_model, y_data = self.prepare(next(self.batches))
        loaded = time.perf_counter()
        torch.manual_seed(self.setup.seed + 1 + k)  # the same scheduled-sampling coins in both pipelines
        value = self.train(x, y_model, y_data, k).item()  # synchronizes a GPU too
        done = time.perf_counter()
        self.losses.append(value)
        if timed:
            self.step_seconds.append(done - began)
            self.load_seconds.append(loaded - began)
        return value


class PgtiPipeline(TimedPipeline):
    """`IndexBatcher` batches (x normalized with calendar, y raw targets) and `pgti train`'s
    `train_step`, with the optimizer, scheduler and loss that `pgti train` builds from a
    config of this model alone (its published recipe)."""

    def __init__(self, name, setup, model, batches):
        from pgti.config import config_from_dict
        from pgti.distributed.engine import Engine
        from pgti.train.metrics import training_loss
        from pgti.train.step import StepParts, make_optimizer, make_scheduler

        super().__init__(name, setup, model, batches)
        cfg = config_from_dict({"model": {"name": setup.model_name}})  # the model's published recipe
        optimizer = make_optimizer(cfg, self.model)
        self.parts = StepParts(
            _first_channels(self.model, len(setup.targets)), optimizer, Engine(None, setup.device), setup.scaler,
            setup.targets, setup.info.missing_value, training_loss(cfg.train.loss), cfg.train.grad_clip,
            make_scheduler(cfg, optimizer, setup.steps_per_epoch, 1))

    def prepare(self, batch):
        x, y, _ = batch
        return x, None, y  # train_step scales y for teacher forcing itself

    def train(self, x, y_model, y_data, k):
        from pgti.train.step import train_step

        return train_step(self.parts, x, y_data, global_step=k)


class PGTPipeline(TimedPipeline):
    """PGT-I's batches (x and y float64 with every feature: standardized speed, time of day)
    and PGT-I's step: Adam with the model's published rate, epsilon and weight decay, clip, step."""

    def __init__(self, name, setup, model, batches):
        import torch

        from pgti.models.registry import get_spec

        super().__init__(name, setup, model, batches)
        recipe = get_spec(setup.model_name).training
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=recipe.learning_rate, eps=recipe.adam_eps,
                                          weight_decay=recipe.weight_decay)
        self.grad_clip = recipe.grad_clip_norm

    def prepare(self, batch):
        import torch

        x64, y64 = batch
        x, y_model = x64.float(), y64.float()  # PGT-I: X_batch.to(device).float(), y_batch likewise
        s = self.setup
        mean = torch.as_tensor(s.scaler.mean[s.targets], dtype=y64.dtype, device=y64.device)
        std = torch.as_tensor(s.scaler.std[s.targets], dtype=y64.dtype, device=y64.device)
        channels = [s.spec.inputs(s.info.num_channels).index(c) for c in s.targets]
        data_units = y64[..., channels] * std + mean  # in the precision PGT-I holds y in
        # A missing reading (0) went through (0 - mean) / std and back: snap the rounding residue.
        tolerance = 1e-5 * (mean.abs() + std)
        missing = s.info.missing_value
        data_units = data_units.masked_fill((data_units - missing).abs() <= tolerance, missing)
        return x, y_model, data_units.float()

    def train(self, x, y_model, y_data, k):
        import torch

        from pgti.train.metrics import masked_mae_loss

        s = self.setup
        out = self.model(x, y_model, global_step=k)
        pred = s.scaler.inverse_transform(out[..., :len(s.targets)].float(), channels=s.targets)
        loss = masked_mae_loss(pred, y_data, s.info.missing_value)
        self.optimizer.zero_grad()
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss


def _first_channels(model, count: int):
    """`model`, scoring its first `count` output channels (dcrnn-pgt echoes every input
    channel, as PGT-I configures it; the loss scores the targets)."""
    import torch

    class FirstChannels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x, y=None, *, global_step=None):
            out = self.inner(x, y, global_step=global_step)
            return out if out.shape[-1] == count else out[..., :count]

    return FirstChannels()


def build_pipelines(data, model: str, *, batch_size: int = 64, device="cpu", seed: int = 0, **overrides):
    """(pgti, pgt_i, setup): both pipelines on `data`, same initial weights, same batch order.
    `overrides` replace model hyper-parameters (e.g. hidden_size=8 in tests)."""
    import torch

    from pgti.bench import baselines, reference
    from pgti.data.batcher import IndexBatcher
    from pgti.models.registry import build_model

    setup = _Setup(data, model, batch_size, device, seed)
    setup.kwargs.update(overrides)
    torch.manual_seed(seed)
    pgti_model = build_model(model, **setup.kwargs)
    pgt_model = getattr(reference, REFERENCES[model])(**setup.kwargs)
    pgt_model.load_state_dict(pgti_model.state_dict())

    on_gpu = setup.device.type == "cuda"
    batcher = IndexBatcher(setup.signals, setup.info.timestamps, setup.train, batch_size, setup.spec, setup.scaler,
                           shuffle=True, seed=seed, drop_last=True, device=setup.device,
                           gather_on="device" if on_gpu else "host")

    def pgti_batches():
        epoch = 0
        while True:
            batcher.set_epoch(epoch)
            yield from batcher
            epoch += 1

    pgt_data = baselines.prepare_series_pgt(setup.signals, setup.info.timestamps, setup.spec, setup.scaler,
                                            device=setup.device if on_gpu else None)
    dataset = baselines.PerSampleWindows(pgt_data, pgt_data, setup.train, setup.spec)

    def pgt_batches():
        epoch = 0
        while True:
            yield from baselines.per_sample_loader(dataset, batch_size, shuffle=True, seed=seed, epoch=epoch,
                                                   drop_last=True)
            epoch += 1

    pgti = PgtiPipeline("pgti", setup, pgti_model, pgti_batches())
    pgt = PGTPipeline("pgt_i", setup, pgt_model, pgt_batches())
    return pgti, pgt, setup


# --------------------------------------------------------------------------- measurement


def measure(data, model: str, *, batch_size: int = 64, steps: int = 5, warmup: int = 1, device: str = "cpu",
            threads: int | None = None, seed: int = 0) -> dict:
    """Interleaved training steps of both pipelines; the result dict (see `format_result`)."""
    import torch

    from pgti.bench.loader import default_threads

    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here; use --device cpu")
    threads = threads or (default_threads() if device == "cpu" else torch.get_num_threads())
    torch.set_num_threads(threads)
    load_before = os.getloadavg()
    began = time.perf_counter()
    pgti, pgt, setup = build_pipelines(data, model, batch_size=batch_size, device=device, seed=seed)
    setup_s = time.perf_counter() - began
    for k in range(warmup + steps):
        order = (pgti, pgt) if k % 2 == 0 else (pgt, pgti)  # alternate who goes first
        for pipeline in order:
            pipeline.step(k, timed=k >= warmup)
    info = setup.info
    result = {
        "benchmark": "epoch", "dataset": str(data), "dataset_name": info.name, "num_nodes": info.num_nodes,
        "num_steps": info.num_steps, "num_edges": info.num_edges, "model": model,
        "parameters": sum(p.numel() for p in pgti.model.parameters()), "batch_size": batch_size,
        "device": device, "threads": threads if device == "cpu" else None,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "train_windows": len(setup.train), "steps_per_epoch": setup.steps_per_epoch, "warmup": warmup,
        "steps": steps, "setup_s": setup_s, "load_average_before": load_before[0],
        "load_average_after": os.getloadavg()[0], "torch": torch.__version__,
        "epoch_time_method": "median measured time per step x steps per epoch (train windows // batch size)",
        "pipelines": {},
    }
    for p in (pgti, pgt):
        median = statistics.median(p.step_seconds)
        result["pipelines"][p.name] = {
            "label": LABELS[p.name], "model_class": type(p.model).__name__, "step_seconds": p.step_seconds,
            "load_seconds": p.load_seconds, "median_step_s": median,
            "median_load_s": statistics.median(p.load_seconds), "samples_per_s": batch_size / median,
            "epoch_time_s": median * setup.steps_per_epoch, "losses": p.losses,
        }
    mine, theirs = result["pipelines"]["pgti"], result["pipelines"]["pgt_i"]
    result["speedup"] = theirs["median_step_s"] / mine["median_step_s"]
    result["first_step_loss_difference"] = abs(pgti.losses[0] - pgt.losses[0])
    return result


def format_result(r: dict) -> str:
    where = f"{r['device']}" + (f", {r['threads']} thread(s)" if r.get("threads") else f" ({r.get('gpu')})")
    lines = [f"bench epoch  {r['model']} ({r['parameters']:,} parameters) on {r['dataset_name']} "
             f"(N={r['num_nodes']}, T={r['num_steps']:,}), batch {r['batch_size']}, {where}",
             f"             {r['steps']} timed steps per pipeline after {r['warmup']} warm-up, interleaved; "
             f"{r['steps_per_epoch']:,} steps per epoch",
             f"{'pipeline':<8}{'s/step':>9}{'load s':>9}{'samples/s':>11}{'epoch (est.)':>14}  what"]
    for name, p in r["pipelines"].items():
        lines.append(f"{name:<8}{p['median_step_s']:>9.3f}{p['median_load_s']:>9.4f}{p['samples_per_s']:>11.1f}"
                     f"{dur(p['epoch_time_s']):>14}  {p['label']}")
    lines.append(f"speedup      {r['speedup']:.2f}x samples/s, pgti vs PGT-I (same steps, data and initial weights); "
                 f"first-step loss |difference| {r['first_step_loss_difference']:.1e}")
    lines.append(f"epoch time = {r['epoch_time_method']}; 1-minute load average "
                 f"{r['load_average_before']:.1f} before, {r['load_average_after']:.1f} after")
    return "\n".join(lines)


def chart(results: list[dict], path) -> Path:
    """Samples/s of both pipelines per (dataset, model, device), with the ratio on top (log scale)."""
    import numpy as np

    fig, ax = pyplot().subplots(figsize=(max(5.0, 1.6 * len(results) + 2), 3.8))
    xs = np.arange(len(results))
    for offset, name in ((-0.2, "pgti"), (0.2, "pgt_i")):
        ax.bar(xs + offset, [r["pipelines"][name]["samples_per_s"] for r in results], 0.4, label=LABELS[name])
    for x, r in zip(xs, results):
        top = max(p["samples_per_s"] for p in r["pipelines"].values())
        ax.text(x, top * 1.15, f"{r['speedup']:.2f}x", ha="center", fontsize=8)
    ax.set_xticks(xs, [f"{r['model']}\n{r['dataset_name']}\n{r['device']}" for r in results], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("training samples/s (batch 64)")
    rates = [p["samples_per_s"] for r in results for p in r["pipelines"].values()] or [1.0]
    ax.set_ylim(min(rates) / 3, max(rates) * 30)  # a third of a decade under the lowest bar; room for the legend
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("end-to-end training, same data / weights / steps (interleaved)", fontsize=10)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgti.bench.epoch", description=__doc__.splitlines()[0])
    add_arguments(parser)
    configure_allocator()  # as under `pgti` (pgti.cli)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
