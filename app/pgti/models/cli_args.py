"""Command-line arguments shared by `pgti info model` and `pgti bench model`.

No torch import at module level: the CLI imports every sub-command to build its parser.
"""
from __future__ import annotations

import argparse
import ast

from pgti.errors import UserError


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """--data, --batch-size, --device, steps, channels and --set overrides."""
    p.add_argument("--data", required=True, metavar="FILE", help="pgti dataset (HDF5): graph and windows")
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch (default 64)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default cpu)")
    p.add_argument("--input-steps", type=int, default=12, help="T_in (default 12)")
    p.add_argument("--output-steps", type=int, default=12, help="T_out (default 12)")
    p.add_argument("--input-channels", type=int,
                   help="C_in (default: the dataset's channels + time of day)")
    p.add_argument("--output-channels", type=int,
                   help="C_out (default: the dataset's channels; dcrnn-pgt: C_in, as PGT-I)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a model hyper-parameter, e.g. --set hidden_size=32 (repeatable)")


def parse_overrides(items: list[str]) -> dict:
    """`["hidden_size=32", "dropout=0.1"]` -> `{"hidden_size": 32, "dropout": 0.1}`."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set hidden_size=32")
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            value = text.strip()
        overrides[key.strip()] = value
    return overrides


def model_setup(name: str, args) -> dict:
    """Open the dataset and resolve the model's keyword arguments from `args`.

    Returns `dict(info=DatasetInfo, device=torch.device, kwargs=...)`, kwargs ready for
    `build_model(name, **kwargs)`.
    """
    import torch

    from pgti.data.format import open_dataset

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    info = open_dataset(args.data)
    input_channels = args.input_channels or info.num_channels + 1
    default_out = input_channels if name == "dcrnn-pgt" else info.num_channels
    kwargs = dict(
        num_nodes=info.num_nodes, input_channels=input_channels,
        output_channels=args.output_channels or default_out,
        input_steps=args.input_steps, output_steps=args.output_steps,
        edge_index=info.edge_index, edge_weight=info.edge_weight, **parse_overrides(args.overrides),
    )
    return dict(info=info, device=torch.device(args.device), kwargs=kwargs)
