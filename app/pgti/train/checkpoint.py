"""Atomic checkpoints with a `latest` pointer, `keep_last` pruning and a separate best.

Writing: `torch.save` to a temporary file in the same directory, flush + fsync, rename over
the final name, fsync the directory, then rewrite the `latest` pointer the same way. A crash
at any moment leaves the previous checkpoint and pointer intact.

Resuming (`find_resumable`): the newest checkpoint that loads and was made under the same
config hash; a truncated or corrupt newest file is skipped with a warning naming it; a
config mismatch is an error unless `ignore_config`.

Checkpoints are our own files, loaded with `weights_only=False` because they hold RNG states
and numpy values; never point `--resume` at a file from an untrusted source.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch

from pgti.errors import UserError

log = logging.getLogger("pgti.checkpoint")
STEP_NAME = re.compile(r"^step-(\d+)\.pt$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, write) -> None:
    """Call `write(fileobj)` into a temp file next to `path`, fsync, rename into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


class CheckpointManager:
    """Checkpoints of one run in `directory` (written by rank 0 only)."""

    def __init__(self, directory: str | os.PathLike, keep_last: int = 3):
        self.directory = Path(directory)
        self.keep_last = keep_last

    @property
    def latest_pointer(self) -> Path:
        return self.directory / "latest"

    @property
    def best_path(self) -> Path:
        return self.directory / "best.pt"

    def step_path(self, global_step: int) -> Path:
        return self.directory / f"step-{global_step:09d}.pt"

    def save(self, state: dict, global_step: int) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.step_path(global_step)
        atomic_write_bytes(path, lambda fh: torch.save(state, fh))
        atomic_write_bytes(self.latest_pointer, lambda fh: fh.write(path.name.encode() + b"\n"))
        self._prune()
        return path

    def save_best(self, state: dict) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.best_path, lambda fh: torch.save(state, fh))
        return self.best_path

    def step_checkpoints(self) -> list[Path]:
        """Step checkpoints, newest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := STEP_NAME.match(p.name))]
        return [p for _, p in sorted(found, reverse=True)]

    def _prune(self) -> None:
        for old in self.step_checkpoints()[self.keep_last:]:
            old.unlink(missing_ok=True)

    def latest(self) -> Path | None:
        try:
            name = self.latest_pointer.read_text().strip()
        except FileNotFoundError:
            return None
        path = self.directory / name
        return path if path.exists() else None


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load one checkpoint; a file that does not load raises UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint; list the run's checkpoints/ directory")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt files raise many kinds of errors
        raise UserError(f"{path}: not a loadable checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"{path}: not a pgti checkpoint (no model state)")
    return state


def find_resumable(manager: CheckpointManager, config_hash: str, ignore_config: bool = False) -> tuple[Path, dict] | None:
    """The newest loadable checkpoint of this config, or None if there is none yet.

    Candidates: the `latest` pointer's target first, then every step checkpoint newest first.
    """
    candidates = []
    pointed = manager.latest()
    for p in ([pointed] if pointed else []) + manager.step_checkpoints():
        if p not in candidates:
            candidates.append(p)
    candidates.sort(key=lambda p: int(STEP_NAME.match(p.name).group(1)), reverse=True)
    for path in candidates:
        try:
            state = load_checkpoint(path)
        except UserError as exc:
            log.warning("skipping checkpoint %s: %s", path.name, exc)
            continue
        if state.get("config_hash") != config_hash and not ignore_config:
            raise UserError(
                f"{path}: made with a different configuration (hash {state.get('config_hash')} vs {config_hash}); "
                "resume with the run's own config.toml, start a new --run-dir, or pass --resume-ignore-config"
            )
        return path, state
    return None
