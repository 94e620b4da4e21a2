"""`pgti predict RUN_DIR --out FILE`: argument parsing, torch-free (`pgti predict --help` stays
instant); the work is `pgti.train.predict.run`."""
from __future__ import annotations

from pgti.outputs import add_force_argument
from pgti.train.evaluate_cli import positive_int


def add_arguments(p) -> None:
    p.add_argument("run_dir", help="a run directory (runs/<name>)")
    p.add_argument("--out", required=True, help="output HDF5 file (written atomically; never the run's dataset, "
                   "checkpoints or state)")
    add_force_argument(p)
    p.add_argument("--split", default="test", choices=["val", "test", "train"],
                   help="which split's windows to forecast (default: test)")
    p.add_argument("--checkpoint", default="best", help="best | latest | PATH")
    p.add_argument("--batch-size", type=positive_int, help="default: the run's eval batch size")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override the run's config (e.g. data.path=... if the data moved)")


def run(args) -> int:
    from pgti.train.predict import run as run_predict

    return run_predict(args)
