"""The `pgti` command: data, train, evaluate, predict, status, bench, info.

Sub-commands live next to the code they drive; each module exposes
`add_arguments(parser)` and `run(args) -> int`. They are imported lazily so that
`pgti --version` and `pgti --help` never import torch.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from pgti import __version__
from pgti.allocator import configure_allocator
from pgti.errors import EXIT_FAILURE, EXIT_USAGE, UserError

# (group, command, module, one-line help). group None = top-level command.
COMMANDS = [
    ("data", "synth", "pgti.data.synth_cli", "generate a realistic synthetic traffic dataset"),
    ("data", "info", "pgti.data.info", "validate a dataset file and print its summary"),
    ("data", "verify", "pgti.data.verify", "read a dataset once: checksums, finite values, plausible ranges"),
    ("data", "import", "pgti.data.importers", "import DCRNN / CSV / NPZ / PGT files into the pgti format"),
    (None, "train", "pgti.train.cli", "train a model (single process or under mpirun/srun)"),
    (None, "evaluate", "pgti.train.evaluate_cli", "evaluate a run's checkpoint on val or test"),
    (None, "predict", "pgti.train.predict_cli", "stream a run's predictions to HDF5"),
    (None, "status", "pgti.train.status_cli", "where a run stands: state, progress, checkpoints (no MPI/torch)"),
    ("bench", "loader", "pgti.bench.loader", "index vs per-sample vs materialized batch loading"),
    ("bench", "model", "pgti.bench.model", "our models vs PGT-I style message passing"),
    ("bench", "memory", "pgti.bench.memory", "node memory per data placement and rank count"),
    ("bench", "epoch", "pgti.bench.epoch", "end-to-end training throughput vs the PGT-I pipeline"),
    ("bench", "all", "pgti.bench.suite", "every benchmark, a report and charts"),
    ("info", "model", "pgti.models.info", "parameter count and one-batch memory of a model"),
    ("info", "env", "pgti.envinfo", "versions of python, torch, MPI, horovod, CUDA"),
]


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser. Only the module of the command named in `argv` is imported (all of
    them when `argv` is None), so `pgti data info` never pays for importing torch."""
    parser = argparse.ArgumentParser(
        prog="pgti",
        description="Memory-efficient distributed training of spatiotemporal GNNs.",
    )
    parser.add_argument("--version", action="version", version=f"pgti {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for group, name, module, help_text in COMMANDS:
        if not _available(module):
            continue  # not built yet in this checkout
        if group is None:
            sub = top.add_parser(name, help=help_text, description=help_text)
        else:
            if group not in groups:
                g = top.add_parser(group, help=f"{group} commands")
                groups[group] = g.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
            sub = groups[group].add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module)
        words = [group, name] if group else [name]
        if argv is None or [w for w in argv if not w.startswith("-")][: len(words)] == words:
            importlib.import_module(module).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        configure_allocator()
        return int(importlib.import_module(args._module).run(args) or 0)
    except UserError as exc:
        print(f"pgti: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("pgti: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `pgti data info FILE | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit would fail again
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
