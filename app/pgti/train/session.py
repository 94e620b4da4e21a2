"""Building a model for a config and dataset, and reloading a trained run for inference."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from pgti.config import Config
from pgti.errors import UserError
from pgti.train.checkpoint import CheckpointManager, load_checkpoint
from pgti.train.rundir import RunDir


def build_model(cfg: Config, pipeline) -> torch.nn.Module:
    from pgti.models.registry import build_model as build

    info = pipeline.info
    return build(
        cfg.model.name, num_nodes=info.num_nodes, input_channels=pipeline.x_channels,
        output_channels=pipeline.y_channels, input_steps=cfg.data.input_steps, output_steps=cfg.data.output_steps,
        edge_index=info.edge_index, edge_weight=info.edge_weight, **cfg.model.params,
    )


def resolve_device(cfg: Config, world) -> torch.device:
    from pgti.dist.world import device_for

    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device = 'cuda' but CUDA is not available here; use --set train.device=auto")
    return device_for(world, prefer=cfg.train.device)


@dataclass
class InferenceSession:
    run_dir: RunDir
    cfg: Config
    pipeline: object
    model: torch.nn.Module
    checkpoint_path: Path
    state: dict


def load_for_inference(run_dir, checkpoint: str, overrides: list[str], world) -> InferenceSession:
    from pgti.train.pipeline import build_pipeline

    run = RunDir(run_dir)
    if not run.config_path.is_file():
        raise UserError(f"{run.path}: not a run directory (no config.toml); give the --run-dir of a `pgti train`")
    cfg = run.load_config(overrides)
    manager = CheckpointManager(run.checkpoints)
    if checkpoint == "best":
        path = manager.best_path if manager.best_path.exists() else manager.latest()
    elif checkpoint == "latest":
        path = manager.latest()
    else:
        path = Path(checkpoint)
    if path is None:
        raise UserError(f"{run.checkpoints}: no checkpoint yet; train first (pgti train ... --run-dir {run.path})")
    state = load_checkpoint(path)
    device = resolve_device(cfg, world)
    pipeline = build_pipeline(cfg, world, device, scaler_state=state["scaler"])
    model = build_model(cfg, pipeline).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return InferenceSession(run, cfg, pipeline, model, path, state)
