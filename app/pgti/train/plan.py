"""`pgti train --dry-run`: validate a config against its dataset and print the plan.

Reads only the dataset's metadata (never the signals), builds the model on the CPU for its
parameter count, and measures the activations one sample saves for backward (a forward and
backward at batch 2 with `saved_tensors_hooks`), which with the data sizes gives the memory
estimates. Nothing is trained and no GPU is needed.
"""
from __future__ import annotations

import math

import torch

from pgti.config import Config
from pgti.data.format import open_dataset
from pgti.data.info import human_bytes

RUNTIME_BYTES = 350 << 20  # python + torch + MPI per process, measured on this machine's CPU build
STORAGE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of tensors autograd saves for backward in one training forward (distinct storages)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x, y, global_step=0)
    out.float().abs().mean().backward()
    model.zero_grad(set_to_none=True)
    return sum(seen.values())


def describe_plan(cfg: Config, world_size: int = 1, num_nodes: int = 1) -> str:
    from pgti.train.pipeline import checked_splits, window_spec

    d, t = cfg.data, cfg.train
    info = open_dataset(d.path)
    spec = window_spec(cfg, info)
    splits = checked_splits(cfg, info, world_size)  # the same checks and messages as the run
    per_rank = len(splits["train"]) // world_size
    steps = per_rank // t.batch_size if t.drop_last else math.ceil(per_rank / t.batch_size)

    from pgti.models.registry import build_model

    cx, cy = spec.x_channels(info.num_channels), len(spec.targets(info.num_channels))
    torch.manual_seed(0)
    model = build_model(cfg.model.name, num_nodes=info.num_nodes, input_channels=cx, output_channels=cy,
                        input_steps=d.input_steps, output_steps=d.output_steps, edge_index=info.edge_index,
                        edge_weight=info.edge_weight, **cfg.model.params)
    n_params = sum(p.numel() for p in model.parameters())
    probe = 2
    x = torch.randn(probe, d.input_steps, info.num_nodes, cx)
    y = torch.randn(probe, d.output_steps, info.num_nodes, cy)
    activations = saved_activation_bytes(model, x, y) / probe * t.batch_size

    raw = info.num_steps * info.num_nodes * info.num_channels * STORAGE_BYTES[d.storage_dtype]
    # partitioned: a node holds its ranks' span plus halos (~5%); on one node that is everything
    node_raw = raw if d.placement == "replicated" or num_nodes <= 1 else raw / num_nodes * 1.05
    ranks_per_node = math.ceil(world_size / max(1, num_nodes))
    batch_bytes = t.batch_size * info.num_nodes * 4 * (d.input_steps * cx + d.output_steps * cy)
    state_bytes = n_params * 4 * 4  # parameters, gradients, Adam's two moments
    # The backward pass holds the gradients of the saved activations beside them: ~2x at its
    # peak (full PeMS, dcrnn-pgt, B=16, 2 ranks: 6.0 GiB planned, 6.4 GiB measured node PSS).
    per_rank_host = RUNTIME_BYTES + state_bytes + 3 * batch_bytes + 2 * activations
    gpu = t.device == "cuda" or (t.device == "auto" and torch.cuda.is_available())
    host_node = node_raw + ranks_per_node * (per_rank_host if not gpu else RUNTIME_BYTES + 3 * batch_bytes)
    device_rank = (node_raw + state_bytes + 2 * batch_bytes + 2 * activations) if gpu else 0
    lines = [
        f"config ok: model {cfg.model.name}, engine {cfg.dist.engine}, {world_size} rank(s) on {num_nodes} node(s)",
        f"dataset     {info.path}: T={info.num_steps:,} N={info.num_nodes:,} C={info.num_channels} "
        f"({human_bytes(raw)} as {d.storage_dtype}; classic windows would take "
        f"{human_bytes(info.window_bytes(d.input_steps, d.output_steps))})",
        f"windows     train {len(splits['train']):,}, val {len(splits['val']):,}, test {len(splits['test']):,} "
        f"({d.split} split, ratios {d.ratios}, {d.input_steps}->{d.output_steps} steps)",
        f"batches     {steps:,} per epoch per rank (batch {t.batch_size} x {world_size} ranks, "
        f"shuffle {t.shuffle}), {t.epochs} epochs"
        + (f", at most {t.max_steps:,} steps" if t.max_steps else ""),
        f"model       {n_params:,} parameters; x [B, {d.input_steps}, {info.num_nodes}, {cx}] -> "
        f"[B, {d.output_steps}, {info.num_nodes}, {cy}]; activations ~{human_bytes(activations)} per batch",
        f"host memory ~{human_bytes(host_node)} per node ({human_bytes(node_raw)} node-shared data "
        f"[{d.placement}] + {ranks_per_node} rank(s) x {human_bytes(per_rank_host if not gpu else RUNTIME_BYTES)})",
        "device mem  " + (f"~{human_bytes(device_rank)} per rank (data resident on the GPU)" if gpu
                           else "none (CPU run)"),
        f"training    {t.optimizer} lr={t.lr} eps={t.eps} weight_decay={t.weight_decay}, {t.schedule} "
        f"milestones={t.milestones} gamma={t.gamma}, grad_clip={t.grad_clip}, loss={t.loss}, patience={t.patience}",
    ]
    if cfg.recipe:
        lines.append(cfg.recipe.describe())
    return "\n".join(lines)
