"""Building a model for a config and dataset, and reloading a trained run for inference."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from pgti.config import Config
from pgti.errors import UserError
from pgti.train.checkpoint import CheckpointManager, load_checkpoint, load_newest
from pgti.train.rundir import RunDir


def model_for_run(cfg: Config, pipeline) -> torch.nn.Module:
    from pgti.models.registry import build_model

    info = pipeline.info
    return build_model(
        cfg.model.name, num_nodes=info.num_nodes, input_channels=pipeline.x_channels,
        output_channels=pipeline.y_channels, input_steps=cfg.data.input_steps, output_steps=cfg.data.output_steps,
        edge_index=info.edge_index, edge_weight=info.edge_weight, **cfg.model.params,
    )


def compiled_for_run(cfg: Config, pipeline, world, model: torch.nn.Module, device, global_step: int):
    """`model.compile`: `model` compiled (and probed on a batch of zeros of the training shape)
    on every rank, or `model` itself on every rank when any rank could not compile it: rank 0
    logs one warning naming the ranks and the first reason. Collective.

    Every rank compiles at once (as torch's own multi-GPU recipes do; inductor's cache takes
    concurrent writers), each with as many compile workers as it has torch threads: inductor's
    default is a worker process per core in every rank, 256 processes on a node of 32 cores
    and 8 ranks. (Node leaders first and the others from their cache was measured: the
    followers still trace, so the 2-rank test took 28 s instead of 18.)"""
    import logging
    import time

    import torch._inductor.config as inductor_config

    from pgti.models.compiled import compile_model, graph_counts, probe_step

    log = logging.getLogger("pgti.train")
    t, nodes = cfg.train, pipeline.info.num_nodes
    x = torch.zeros(t.batch_size, cfg.data.input_steps, nodes, pipeline.x_channels, device=device)
    y = torch.zeros(t.batch_size, cfg.data.output_steps, nodes, pipeline.y_channels, device=device)
    inductor_config.compile_threads = max(1, torch.get_num_threads())
    log.info("model.compile: compiling the model with torch.compile (inductor) ...")
    began = time.perf_counter()
    compiled, failure = compile_model(model, probe_step(x, y, global_step, autocast=t.bf16 and device.type == "cuda"),
                                      device)
    failures = world.comm.allgather(failure)
    failed = [rank for rank, reason in enumerate(failures) if reason]
    if not failed:  # graph breaks: code that runs eager between the compiled graphs
        log.info("model.compile: compiled in %.1f s (%d graph(s), %d graph break(s))", time.perf_counter() - began,
                 *graph_counts())
        return compiled
    if world.is_root:
        ranks = ", ".join(map(str, failed[:8])) + (", ..." if len(failed) > 8 else "")
        log.warning("model.compile: torch.compile failed on rank(s) %s of %d (%s); every rank trains eager",
                    ranks, world.size, failures[failed[0]])
    return model


def dataset_identity(info) -> dict:
    """What a checkpoint records of the dataset it was trained on: the sensors (ids, in order)
    and channels. The time range may change (a longer series); the sensors may not."""
    ids = hashlib.sha256("\n".join(map(str, info.node_ids)).encode()).hexdigest()[:16]
    return {"num_nodes": int(info.num_nodes), "channels": list(info.channels), "node_ids_sha256": ids}


def check_dataset(state: dict, info, path, world) -> None:
    """End every rank with one line if the checkpoint at `path` was trained on other sensors or
    channels than `info` (checkpoints from before this record existed are not checked).
    Collective: every rank calls it."""
    from pgti.distributed.world import raise_if_any_failed

    made_on, here, error = state.get("dataset"), dataset_identity(info), None
    for key, what in (("num_nodes", "sensors"), ("node_ids_sha256", "sensor ids"), ("channels", "channels")):
        if made_on and made_on.get(key) != here[key]:
            detail = f"{made_on.get(key)} vs {here[key]}" if key != "node_ids_sha256" else "same count, other ids or order"
            error = UserError(f"{path}: trained on a dataset with other {what} than {info.path} ({detail}); "
                              "use the run's own data.path, or train a new run on this dataset")
            break
    raise_if_any_failed(world, error)


def load_weights(model: torch.nn.Module, weights: dict, path, world) -> None:
    """`model.load_state_dict(weights)`; weights of another model or graph size end every rank
    with one line naming the checkpoint and the first mismatch (not a traceback per rank)."""
    from pgti.distributed.world import raise_if_any_failed

    error = None
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()] or [str(exc)]
        first = lines[0][:240]
        error = UserError(f"{path}: its weights do not fit this model ({first}); use the run's own model "
                          "settings and dataset, or start a new run")
    raise_if_any_failed(world, error)


def require_split(splits: dict, split: str, ratios, world) -> None:
    """One line on every rank if `split` has no windows (its fraction in data.ratios is 0).
    Collective."""
    from pgti.distributed.world import raise_if_any_failed

    error = None
    if len(splits[split]) == 0:
        error = UserError(f"the {split} split is empty (data.ratios = {ratios}); choose another --split, or train "
                          "a run whose ratios give it windows")
    raise_if_any_failed(world, error)


def resolve_device(cfg: Config, world) -> torch.device:
    from pgti.distributed.world import device_for

    if cfg.train.device == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device = 'cuda' but CUDA is not available here; use --set train.device=auto")
    return device_for(world, prefer=cfg.train.device)


def inputs_of_run(run_dir, overrides: list[str], checkpoint: str) -> list[Path]:
    """The files an inference command on `run_dir` reads besides the run's own state (which
    pgti.outputs protects anyway): its dataset, and a --checkpoint PATH. [] when the run
    directory or its config cannot be read (load_for_inference says why, later)."""
    run = RunDir(run_dir)
    try:
        cfg = run.load_config(overrides)
    except (UserError, OSError):
        return []
    return [Path(cfg.data.path)] + ([Path(checkpoint)] if checkpoint not in ("best", "latest") else [])


@dataclass
class InferenceSession:
    run_dir: RunDir
    cfg: Config
    pipeline: object
    model: torch.nn.Module
    checkpoint_path: Path
    state: dict


def load_for_inference(run_dir, checkpoint: str, overrides: list[str], world, split: str | None = None) -> InferenceSession:
    """The run's model on its dataset, from `checkpoint` (best | latest | PATH). `split`: the
    split about to be used, checked to have windows before any data is read."""
    from pgti.distributed.world import run_on_root
    from pgti.train.pipeline import build_pipeline

    def locate():
        """Rank 0 reads the run's config and checkpoint once; every rank gets them."""
        run = RunDir(run_dir)
        if not run.config_path.is_file():
            raise UserError(f"{run.path}: not a run directory (no config.toml); give the --run-dir of a `pgti train`")
        cfg = run.load_config(overrides)
        if checkpoint in ("best", "latest"):  # one that does not load: the previous one, with a warning
            return (cfg, *load_newest(CheckpointManager(run.checkpoints), checkpoint))
        return cfg, Path(checkpoint), load_checkpoint(checkpoint)

    cfg, path, state = run_on_root(world, locate)
    device = resolve_device(cfg, world)
    def before_load(info, splits):
        check_dataset(state, info, path, world)
        if split is not None:
            require_split(splits, split, cfg.data.ratios, world)

    pipeline = build_pipeline(cfg, world, device, scaler_state=state["scaler"], for_training=False,
                              before_load=before_load)
    model = model_for_run(cfg, pipeline).to(device)
    load_weights(model, state["model"], path, world)
    model.eval()
    return InferenceSession(RunDir(run_dir), cfg, pipeline, model, path, state)
