"""`pgti info env`: what this installation runs on (for bug reports and benchmark reports)."""
from __future__ import annotations

import importlib.util
import platform


def environment() -> dict:
    import h5py
    import numpy
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "numpy": numpy.__version__,
        "h5py": h5py.__version__,
        "hdf5": h5py.version.hdf5_version,
    }
    try:
        from mpi4py import MPI

        info["mpi4py"] = __import__("mpi4py").__version__
        info["mpi"] = MPI.Get_library_version().strip().splitlines()[0].split(",")[0]
    except ImportError:
        info["mpi"] = None
    if importlib.util.find_spec("horovod") is not None:
        import horovod
        import horovod.torch as hvd

        info["horovod"] = horovod.__version__
        info["horovod_mpi"] = bool(hvd.mpi_built())
        info["horovod_nccl"] = bool(hvd.nccl_built())
    else:
        info["horovod"] = None
    from pgti import __version__

    info["pgti"] = __version__
    return info


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    import json

    info = environment()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for k, v in info.items():
            print(f"{k:14s} {v}")
    return 0
