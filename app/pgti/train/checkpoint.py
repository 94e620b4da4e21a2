"""Atomic checkpoints with a `latest` pointer, `keep_last` pruning and a separate best.

Writing: `torch.save` to a temporary file in the same directory, flush + fsync, rename over
the final name, fsync the directory, then rewrite the `latest` pointer the same way. A crash
at any moment leaves the previous checkpoint and pointer intact.

Resuming (`find_resumable`): the newest checkpoint that loads and was made under the same
config hash (or under a config recorded in it that trains the same, only written
differently: see `training_identity`); a truncated or corrupt newest file is skipped with a
warning naming it; a config mismatch is an error unless `ignore_config`.

Checkpoints are our own files, loaded with `weights_only=False` because they hold RNG states
and numpy values; never point `--resume` at a file from an untrusted source.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from pathlib import Path

from pgti.errors import UserError
from pgti.outputs import atomic_output

log = logging.getLogger("pgti.checkpoint")
STEP_NAME = re.compile(r"^step-(\d+)\.pt$")


def atomic_write_bytes(path: Path, write) -> None:
    """Call `write(fileobj)` into a temp file next to `path`, fsync, rename into place
    (`pgti.outputs.atomic_output`; an OSError stays one, for the caller's own message)."""
    with atomic_output(path, option=None) as tmp, open(tmp, "wb") as fh:
        write(fh)


def _serialize(state: dict) -> memoryview:
    """The checkpoint's bytes, made in memory (weights and optimizer state: megabytes), so the
    file is written by plain writes: a full disk is then an OSError naming the errno (torch's
    zip writer turns a failing write into an opaque RuntimeError)."""
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer()


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
        path = self.step_path(global_step)
        data = _serialize(state)
        with self._writing(path):
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, lambda fh: fh.write(data))
            atomic_write_bytes(self.latest_pointer, lambda fh: fh.write(path.name.encode() + b"\n"))
        self._prune()
        return path

    def save_best(self, state: dict) -> Path:
        data = _serialize(state)
        with self._writing(self.best_path):
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.best_path, lambda fh: fh.write(data))
        return self.best_path

    @contextlib.contextmanager
    def _writing(self, path: Path):
        """A full disk or a lost permission: one line naming the file and what is still intact."""
        try:
            yield
        except OSError as exc:
            kept = self.latest()
            raise UserError(f"{path}: cannot write the checkpoint ({exc.strerror or exc}); "
                            + (f"{kept.name} is intact: " if kept else "")
                            + "free space or fix permissions, then run again with --resume auto") from None

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
            name = self.latest_pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("ignoring %s: unreadable (%s)", self.latest_pointer, exc)
            return None
        if not STEP_NAME.match(name):  # pgti writes "step-NNNNNNNNN.pt"; anything else was edited
            log.warning("ignoring %s: %r is not a step checkpoint name", self.latest_pointer, name)
            return None
        path = self.directory / name
        return path if path.is_file() else None


# what inference needs, and what a resume needs besides
INFERENCE_KEYS = ("model", "scaler")
RESUME_KEYS = INFERENCE_KEYS + ("optimizer", "scheduler", "epoch", "batch_in_epoch", "global_step", "best_val_mae",
                                "epochs_without_improvement", "partial_loss", "rng", "config_hash")


def load_checkpoint(path: str | os.PathLike, map_location="cpu", required=INFERENCE_KEYS) -> dict:
    """Load one checkpoint; a file that does not load, or lacks a `required` key, raises
    UserError naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint; list the run's checkpoints/ directory")
    import torch

    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt files raise many kinds of errors
        raise UserError(f"{path}: not a loadable checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"{path}: not a pgti checkpoint (no model state)")
    missing = [key for key in required if key not in state]
    if missing:
        raise UserError(f"{path}: an incomplete pgti checkpoint (no {', '.join(missing)}); use another checkpoint")
    return state


def training_identity(config: dict) -> dict:
    """What a config (`pgti.config.to_dict` form, as checkpoints record it) trains, as a flat
    `{section.key: value}`: the hashed keys, a key the record lacks at its default (a key
    added since: the run trained with that default), `model.params` merged over the model's
    own defaults, and milestones / gamma only for the multistep schedule (the others ignore
    them). Two configs that give the same identity train the same thing."""
    import dataclasses

    from pgti.config import SECTIONS, Config
    from pgti.models.registry import get_spec, model_names

    ident, blank = {}, Config()
    for section in SECTIONS:
        given = config.get(section) or {}
        for f in dataclasses.fields(getattr(blank, section)):
            if not f.metadata.get("resume_safe"):
                ident[f"{section}.{f.name}"] = given.get(f.name, getattr(getattr(blank, section), f.name))
    if ident["model.name"] in model_names():
        ident["model.params"] = {**get_spec(ident["model.name"]).hyperparameters, **ident["model.params"]}
    if ident["train.schedule"] != "multistep":
        del ident["train.milestones"], ident["train.gamma"]
    return ident


def check_config_hash(path, state: dict, config_hash: str, ignore_config: bool = False, config: dict | None = None
                      ) -> None:
    """UserError unless the checkpoint at `path` was made under this config (or ignored).
    `config` (this run's, `to_dict` form): a checkpoint whose recorded config has another
    hash but trains the same (`training_identity`; e.g. defaults written out in one and left
    out in the other) is accepted, with a log line."""
    if state.get("config_hash") == config_hash or ignore_config:
        return
    if config is not None and state.get("config") and training_identity(state["config"]) == training_identity(config):
        log.info("%s: made under config hash %s, this config's is %s, but both train the same (defaults written "
                 "out or left out); resuming", path, state.get("config_hash"), config_hash)
        return
    raise UserError(
        f"{path}: made with a different configuration (hash {state.get('config_hash')} vs {config_hash}); "
        "resume with that run's own config.toml, start a new --run-dir, or pass --resume-ignore-config "
        "to continue these weights under this config")


def newest_first(manager: CheckpointManager) -> list[Path]:
    """The step checkpoints, newest (highest step) first, the `latest` pointer's target among
    them: the order in which both resuming and inference try them."""
    candidates = manager.step_checkpoints()
    pointed = manager.latest()
    if pointed and pointed not in candidates:
        candidates.append(pointed)
    return sorted(candidates, key=lambda p: int(STEP_NAME.match(p.name).group(1)), reverse=True)


def load_newest(manager: CheckpointManager, which: str) -> tuple[Path, dict]:
    """The checkpoint inference uses: `which` = "best" (best.pt, else the newest step
    checkpoint) or "latest" (the newest step checkpoint). One that does not load is skipped
    with a warning naming it, as `--resume auto` does; UserError when none loads."""
    candidates = ([manager.best_path] if which == "best" and manager.best_path.is_file() else []) + \
        newest_first(manager)
    for path in candidates:
        try:
            return path, load_checkpoint(path)
        except UserError as exc:
            log.warning("skipping checkpoint %s: %s; trying the previous one", path.name, exc)
    if candidates:
        raise UserError(f"{manager.directory}: none of its {len(candidates)} checkpoint(s) loads (see the warnings "
                        "above); restore a good checkpoint there")
    raise UserError(f"{manager.directory}: no checkpoint yet; train first (pgti train ... --run-dir "
                    f"{manager.directory.parent})")


def find_resumable(manager: CheckpointManager, config_hash: str, ignore_config: bool = False,
                   config: dict | None = None) -> tuple[Path, dict] | None:
    """The newest loadable checkpoint of this config (see `check_config_hash`), or None if
    there is none yet.

    Candidates: the `latest` pointer's target first, then every step checkpoint newest first.
    """
    candidates = newest_first(manager)
    for path in candidates:
        try:
            state = load_checkpoint(path, required=RESUME_KEYS)
        except UserError as exc:
            log.warning("skipping checkpoint %s: %s", path.name, exc)
            continue
        check_config_hash(path, state, config_hash, ignore_config, config)
        return path, state
    if candidates:  # there was a run here, and none of its checkpoints loads: never silently start over
        raise UserError(f"{manager.directory}: none of its {len(candidates)} checkpoint(s) loads (see the warnings "
                        "above); nothing to resume. Restore a good checkpoint there, or move the directory away "
                        "to start over")
    return None
