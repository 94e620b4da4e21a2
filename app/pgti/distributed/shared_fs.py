"""Paths every node must see: a run directory written by rank 0 and read again after a requeue.

Rank 0 alone writes a run's checkpoints, config.toml and metrics. A job that is requeued, or
resubmitted with `--resume auto`, may start on other nodes with another rank 0: a run
directory on one node's /tmp or local disk would then be missing, and the run would start
over without a word. `check_visible_on_every_node` finds that at start-up: rank 0 writes a
token file into the directory, one rank per other node must read the same token back.

NFS caches the absence of a name for a while (its negative lookup cache); listing the parent
directory revalidates it, and a reader retries for `wait_s` before it gives up. Lustre and
GPFS are coherent: the token is visible at once.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pgti.distributed.failfast import raise_if_any_failed, run_on_root
from pgti.errors import UserError

if TYPE_CHECKING:
    from pgti.distributed.world import World

TOKEN_NAME = ".pgti-visible"


def _write_token(path: Path) -> tuple[str, str]:
    host = socket.gethostname()
    token = f"{host} {os.getpid()} {time.time_ns()}"
    try:
        path.write_text(token)
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot write {path.name} there ({exc.strerror})") from None
    return token, host


def _reads_back(path: Path, token: str, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.listdir(path.parent.parent)  # revalidates NFS's cached view of the directory
            if path.read_text() == token:
                return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def check_visible_on_every_node(world: "World", directory: str | os.PathLike, what: str = "run directory",
                                wait_s: float = 5.0) -> None:
    """Collective over the world: a UserError on every rank when a node other than rank 0's
    does not see `directory` (which rank 0 has created) as rank 0 does. One node: no check."""
    if world.num_nodes == 1:
        return
    path = Path(directory) / TOKEN_NAME
    token, root_host = run_on_root(world, _write_token, path)
    error = None
    if world.is_leader and world.node != 0 and not _reads_back(path, token, wait_s):
        error = UserError(
            f"{what} {directory} is not visible from host {socket.gethostname()} (rank {world.rank}; rank 0 "
            f"created it on host {root_host}): checkpoints, config.toml and train.log must be on a filesystem "
            "every node sees (shared scratch, project or home; not a node's /tmp or local disk), or a job "
            f"requeued onto other nodes starts over without them; choose a {what} there")
    try:
        raise_if_any_failed(world, error)
    finally:
        if world.is_root:
            path.unlink(missing_ok=True)
