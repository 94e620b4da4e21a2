"""`pgti evaluate RUN_DIR`: argument parsing, torch-free (`pgti evaluate --help` stays instant);
the work is `pgti.train.evaluate.run`."""
from __future__ import annotations


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse then names the flag in its one-line error)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="a run directory (runs/<name>)")
    p.add_argument("--split", default="test", choices=["val", "test", "train"],
                   help="which split to score (default: test)")
    p.add_argument("--checkpoint", default="best",
                   help="best (default; the latest when there is no best.pt yet) | latest | PATH")
    p.add_argument("--batch-size", type=positive_int, help="default: the run's eval batch size")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override the run's config (e.g. data.path=... if the data moved)")


def run(args) -> int:
    from pgti.train.evaluate import run as run_evaluate

    return run_evaluate(args)
