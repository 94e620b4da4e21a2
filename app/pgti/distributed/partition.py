"""Which window starts each rank trains and evaluates on: pure functions of (seed, epoch,
rank, world size). No MPI: every rank computes its own share (or anyone else's) without
communication, and unit tests run without mpirun.

Training (`rank_window_starts`): every rank gets the SAME number of full batches,
`batches_per_rank(...)`, so collectives (gradient allreduce) never mismatch. S = number of
training windows, W = world size, B = batch size, nb = batches per rank.

  shuffle="global"  A permutation of all S windows per epoch (numpy PCG64 seeded from
                    (seed, epoch)), identical on every rank. Rank r takes the contiguous chunk
                    [r*nb*B, (r+1)*nb*B) of it.
                    drop_last=True:  nb = S // (W*B); the permutation's last S - W*nb*B
                                     windows (fewer than W*B, a different random set each
                                     epoch) are skipped this epoch.
                    drop_last=False: nb = ceil(S / (W*B)); the permutation is extended by
                                     wrapping around to its start, so W*nb*B - S windows are
                                     seen twice this epoch and every window at least once.
  shuffle="local"   PGT-I's generalized variant: rank r owns the fixed contiguous block
                    [floor(r*S/W), floor((r+1)*S/W)) of the starts (sizes differ by at most
                    one) and shuffles inside it each epoch (seeded from (seed, epoch, r)).
                    Each rank only ever touches its own block, so a node can hold only its
                    ranks' time span (partitioned placement).
                    drop_last=True:  nb = (smallest block) // B; each rank skips the tail of
                                     its shuffled block (at most B windows).
                    drop_last=False: nb = ceil(largest block / B); each rank pads its shuffled
                                     block by wrapping around it.
  shuffle="none"    The same blocks as "local", in order (no shuffling), same trimming/padding.

Evaluation (`eval_shard`): contiguous shards of the same floor(r*S/W) boundaries, NOT
trimmed or padded: sizes may differ by one and a rank may get 0 windows (S < W). Each rank
scores its own shard with no collective per batch, so ranks may run different numbers of
batches; the metric sums (not means) are allreduced once at the end (pgti.train.evaluate),
which gives exactly the single-process result.

The permutations use numpy's `default_rng(SeedSequence([seed, epoch]))`: the same on every
machine and platform for a given numpy major version.
"""
from __future__ import annotations

import numpy as np

from pgti.errors import UserError

SHUFFLE_MODES = ("global", "local", "none")


def epoch_rng(seed: int, epoch: int, rank: int | None = None) -> np.random.Generator:
    """The generator of epoch `epoch` (and of `rank`'s block, for "local"). Seeds are taken
    modulo 2**64, so any integer works."""
    entropy = [int(seed) % 2**64, int(epoch) % 2**64] + ([int(rank)] if rank is not None else [])
    return np.random.default_rng(np.random.SeedSequence(entropy))


def block_bounds(num_windows: int, world_size: int, rank: int) -> tuple[int, int]:
    """[lo, hi) positions of rank's contiguous block: floor(r*S/W) .. floor((r+1)*S/W)."""
    _check_rank(rank, world_size)
    return rank * num_windows // world_size, (rank + 1) * num_windows // world_size


def batches_per_rank(num_windows: int, batch_size: int, world_size: int, shuffle: str = "global",
                     drop_last: bool = True) -> int:
    """nb: full batches every rank trains per epoch (the same on every rank; see module doc)."""
    _check_mode(shuffle)
    if batch_size < 1 or world_size < 1:
        raise ValueError(f"batch_size {batch_size} and world_size {world_size} must be >= 1")
    if shuffle == "global":
        per_step = world_size * batch_size
        return num_windows // per_step if drop_last else -(-num_windows // per_step)
    smallest, largest = num_windows // world_size, -(-num_windows // world_size)
    return smallest // batch_size if drop_last else -(-largest // batch_size)


def rank_window_starts(window_starts, rank: int, world_size: int, batch_size: int, *, seed: int = 0,
                       epoch: int = 0, shuffle: str = "global", drop_last: bool = True) -> np.ndarray:
    """This rank's training window starts for `epoch`, in batch order, int64 `[nb * B]` (steps):
    batch k is `result[k*B:(k+1)*B]`. Same arguments, same result, on any rank, any call.

    window_starts  int64 [S], the training split (e.g. `make_splits(...)["train"]`).
    Raises UserError when that gives no batch at all (too few windows for W ranks of B).
    """
    window_starts = np.asarray(window_starts, dtype=np.int64).reshape(-1)
    num_windows = len(window_starts)
    _check_rank(rank, world_size)
    nb = batches_per_rank(num_windows, batch_size, world_size, shuffle, drop_last)
    if nb == 0 or (shuffle != "global" and num_windows < world_size):
        raise UserError(
            f"{num_windows} training windows give no full batch of {batch_size} on each of {world_size} ranks "
            f"(shuffle={shuffle}, drop_last={drop_last}); use a smaller batch size, fewer ranks, a longer "
            "series" + (", or drop_last=false" if drop_last and shuffle == "global" else ""))
    per_rank = nb * batch_size
    if shuffle == "global":
        order = epoch_rng(seed, epoch).permutation(num_windows)
        if len(order) < world_size * per_rank:
            order = np.resize(order, world_size * per_rank)  # wraps around: the padding
        return window_starts[order[rank * per_rank:(rank + 1) * per_rank]]
    lo, hi = block_bounds(num_windows, world_size, rank)
    block = window_starts[lo:hi]
    if shuffle == "local":
        block = block[epoch_rng(seed, epoch, rank).permutation(len(block))]
    return np.resize(block, per_rank) if per_rank > len(block) else block[:per_rank]


def eval_shard(window_starts, rank: int, world_size: int) -> np.ndarray:
    """Contiguous evaluation shard of `rank`, int64 `[S_r]` window starts in order (sizes
    differ by at most one; may be empty). The caller reduces sums, not means, across ranks,
    and has no collective per batch, so ranks may loop over different numbers of batches."""
    window_starts = np.asarray(window_starts, dtype=np.int64).reshape(-1)
    lo, hi = block_bounds(len(window_starts), world_size, rank)
    return window_starts[lo:hi]


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside [0, {world_size})")


def _check_mode(shuffle: str) -> None:
    if shuffle not in SHUFFLE_MODES:
        raise UserError(f"shuffle {shuffle!r} is not one of {', '.join(SHUFFLE_MODES)}")
