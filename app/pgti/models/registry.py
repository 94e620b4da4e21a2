"""Models by name, with their shapes, papers and default hyper-parameters.

    from pgti.models.registry import build_model, get_spec
    model = build_model("dcrnn", num_nodes=N, input_channels=2, output_channels=1,
                        input_steps=12, output_steps=12, edge_index=ei, edge_weight=ew,
                        hidden_size=32)                      # overrides of the defaults
    get_spec("dcrnn").training.learning_rate                 # 0.01: what the paper trained with

Every model: `forward(x [B, T_in, N, C_in], y=None, *, global_step=None) -> [B, T_out, N, C_out]`.
`y [B, T_out, N, >= C_out]` and `global_step` (batches seen) matter only to DCRNN's scheduled
sampling in training mode; the other models ignore them. `edge_index [2, E]` is (source,
target), `edge_weight [E]` (None = 1). Importing this module does not import torch: a model's
module is imported when the model is built or its defaults are read.
"""
from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass

from pgti.errors import UserError
from pgti.models.defaults import TrainingDefaults

COMMON_ARGUMENTS = ("num_nodes", "input_channels", "output_channels", "input_steps", "output_steps",
                    "edge_index", "edge_weight")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    module: str  # pgti.models.<module>
    class_name: str
    summary: str
    shapes: str

    def model_class(self):
        return getattr(importlib.import_module(self.module), self.class_name)

    @property
    def paper(self) -> str:
        return importlib.import_module(self.module).PAPER

    @property
    def training(self) -> TrainingDefaults:
        """Optimizer / schedule / batch defaults the model was published with."""
        return importlib.import_module(self.module).TRAINING_DEFAULTS

    @property
    def hyperparameters(self) -> dict:
        """Architecture defaults: the model's keyword arguments beyond the common ones."""
        signature = inspect.signature(self.model_class().__init__)
        return {name: p.default for name, p in signature.parameters.items()
                if p.kind is p.KEYWORD_ONLY and name not in COMMON_ARGUMENTS}


MODELS: dict[str, ModelSpec] = {
    spec.name: spec for spec in (
        ModelSpec(
            "dcrnn", "pgti.models.dcrnn", "DCRNN",
            "DCRNN seq2seq: 2 x 64 DCGRU encoder-decoder, dual random walk, K=2, scheduled sampling",
            "x [B, T_in, N, C_in] -> [B, T_out, N, C_out]; y [B, T_out, N, C_out] for scheduled sampling",
        ),
        ModelSpec(
            "dcrnn-pgt", "pgti.models.dcrnn_pgt", "PGTDCRNN",
            "PGT-I's configuration: one DCGRU cell, K=3, hidden states as forecast; hidden = C_out, or "
            "hidden_channels = C_in = 2 as PGT-I (speed + time of day: 150 parameters)",
            "x [B, T, N, C_in] -> [B, T, N, C_out] (T_out must equal T_in)",
        ),
        ModelSpec(
            "a3tgcn", "pgti.models.a3tgcn", "A3TGCN",
            "A3T-GCN: T-GCN cell (GCN + GRU, 64 units), attention over input periods, FC to T_out",
            "x [B, T_in, N, C_in] -> [B, T_out, N, C_out]",
        ),
        ModelSpec(
            "gwnet", "pgti.models.gwnet", "GraphWaveNet",
            "Graph WaveNet: 8 gated dilated TCN layers, diffusion GCN + adaptive adjacency, skips",
            "x [B, T_in, N, C_in] -> [B, T_out, N, C_out]",
        ),
    )
}


# Integer hyper-parameters that may be 0 (all others must be >= 1): no diffusion beyond the
# identity, and dcrnn-pgt's "hidden = output channels".
ZERO_ALLOWED = {"max_diffusion_step", "hidden_channels"}
FRACTIONS = {"dropout"}  # in [0, 1)


def check_hyperparameter(key: str, value, default) -> str | None:
    """What is wrong with `value` for hyper-parameter `key` (whose default is `default`), or None.
    The type follows the default's: an integer, a number or true/false."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"expected true or false, got {value!r}"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected an integer, got {value!r}"
        lowest = 0 if key in ZERO_ALLOWED else 1
        return None if value >= lowest else f"{value} is below the minimum {lowest}"
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"expected a finite number, got {value!r}"
        if key in FRACTIONS and not 0.0 <= value < 1.0:
            return f"{value} is outside [0, 1)"
    return None


def model_names() -> list[str]:
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}") from None


def build_model(name: str, *, num_nodes: int, input_channels: int, output_channels: int,
                input_steps: int, output_steps: int, edge_index, edge_weight=None, **overrides):
    """Build model `name` for a graph; `overrides` replace its default hyper-parameters.

    Raises UserError for an unknown name, an unknown or invalid hyper-parameter.
    """
    spec = get_spec(name)
    known = spec.hyperparameters
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise UserError(f"model {name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
                        f"known: {', '.join(known) or 'none'}")
    for key, value in overrides.items():
        problem = check_hyperparameter(key, value, known[key])
        if problem:
            raise UserError(f"model {name!r}: hyper-parameter {key}: {problem}")
    for key, value in (("num_nodes", num_nodes), ("input_channels", input_channels),
                       ("output_channels", output_channels), ("input_steps", input_steps),
                       ("output_steps", output_steps)):
        if int(value) < 1:
            raise UserError(f"model {name!r}: {key} must be >= 1, got {value}")
    try:
        return spec.model_class()(num_nodes=int(num_nodes), input_channels=int(input_channels),
                                  output_channels=int(output_channels), input_steps=int(input_steps),
                                  output_steps=int(output_steps), edge_index=edge_index,
                                  edge_weight=edge_weight, **overrides)
    except ValueError as exc:
        raise UserError(f"model {name!r}: {exc}") from None


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
