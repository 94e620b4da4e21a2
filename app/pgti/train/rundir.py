"""The run directory and what rank 0 writes into it.

    runs/<name>/
      config.toml       the resolved configuration (every key)
      train.log         rank-prefixed log lines of every run and resume
      metrics.jsonl     one JSON object per epoch
      checkpoints/      step-*.pt, best.pt, latest
      plots/            loss.png, val_mae.png (refreshed every epoch)
"""
from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import torch

from pgti.config import Config, load_config, to_toml
from pgti.errors import UserError
from pgti.train.checkpoint import atomic_write_bytes


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def log_path(self) -> Path:
        return self.path / "train.log"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    def prepare(self) -> None:
        """Create the directories (rank 0, before anything is written); a path that cannot be
        used is one UserError naming it."""
        for d in (self.path, self.checkpoints, self.plots):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise UserError(f"--run-dir {self.path}: {d} exists and is not a directory; choose another "
                                "--run-dir") from None
            except OSError as exc:
                raise UserError(f"--run-dir {self.path}: cannot create {d} ({exc.strerror}); choose a writable "
                                "--run-dir") from None
        for d in (self.path, self.checkpoints):
            if not os.access(d, os.W_OK | os.X_OK):
                raise UserError(f"--run-dir {self.path}: {d} is not writable; choose a writable --run-dir")
        for f in (self.log_path, self.config_path, self.metrics_path):
            if f.exists() and not f.is_file():
                raise UserError(f"--run-dir {self.path}: {f} is not a file; move it away or choose another --run-dir")

    def check_start(self, resume: str | None) -> None:
        """A run must not mix its files with an earlier run's: `keep_last` pruning keeps the
        highest step numbers, so the new run's own checkpoints would be deleted as soon as
        written and `latest` left dangling. Refuses a fresh start (no --resume) and a --resume
        PATH from elsewhere in a directory that holds step checkpoints or a best.pt."""
        from pgti.train.checkpoint import CheckpointManager

        manager = CheckpointManager(self.checkpoints)
        earlier = manager.step_checkpoints() or ([manager.best_path] if manager.best_path.exists() else [])
        if not earlier or resume == "auto":
            return
        if resume is not None and Path(resume).resolve().parent == self.checkpoints.resolve():
            return  # one of this run's own checkpoints
        what = "--resume auto to continue it" + ("" if resume is None else f" (not --resume {resume})")
        raise UserError(f"--run-dir {self.path}: holds an earlier run's checkpoints (newest {earlier[0].name}); use "
                        f"{what}, or give a new --run-dir, or move that directory away to start over there")

    def create(self, cfg: Config) -> None:
        self.prepare()
        atomic_write_bytes(self.config_path, lambda fh: fh.write(to_toml(cfg).encode()))

    def load_config(self, overrides: list[str] | None = None) -> Config:
        return load_config(self.config_path, overrides)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def append_metrics(self, row: dict) -> None:
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    def truncate_metrics(self, before_epoch: int) -> None:
        """Drop rows of epochs >= `before_epoch` (a resume redoes them)."""
        rows = [r for r in self.read_metrics() if r["epoch"] < before_epoch]
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def peak_rss_bytes() -> int:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_device_bytes(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
