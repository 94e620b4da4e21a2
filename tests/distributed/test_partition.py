"""pgti.distributed.partition: pure functions, no MPI."""
import numpy as np
import pytest

from pgti.distributed.partition import SHUFFLE_MODES, batches_per_rank, block_bounds, eval_shard, rank_window_starts
from pgti.errors import UserError

# Window starts with a stride, so positions and values differ.
STARTS = np.arange(0, 3 * 203, 3, dtype=np.int64)  # S = 203 windows


def shares(starts, world, batch, shuffle, drop_last, seed=0, epoch=0):
    return [rank_window_starts(starts, r, world, batch, seed=seed, epoch=epoch, shuffle=shuffle,
                               drop_last=drop_last) for r in range(world)]


@pytest.mark.parametrize("world", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shuffle", ["global", "local"])
@pytest.mark.parametrize("seed, epoch", [(0, 0), (7, 3), (12345, 41)])
def test_drop_last_shares_are_disjoint_equal_and_miss_less_than_a_step(world, shuffle, seed, epoch):
    batch = 8
    parts = shares(STARTS, world, batch, shuffle, True, seed, epoch)
    nb = batches_per_rank(len(STARTS), batch, world, shuffle, True)
    assert nb > 0 and all(len(p) == nb * batch for p in parts)  # equal batch counts
    used = np.concatenate(parts)
    assert len(np.unique(used)) == len(used)  # disjoint, no repeats
    assert np.isin(used, STARTS).all()
    dropped = len(STARTS) - len(used)
    # global: fewer than one step of all ranks; local: at most one batch per rank
    assert dropped < world * batch if shuffle == "global" else dropped <= world * batch


@pytest.mark.parametrize("world", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("shuffle", ["global", "local", "none"])
@pytest.mark.parametrize("seed, epoch", [(0, 0), (3, 9)])
def test_padded_shares_cover_every_window_with_equal_counts(world, shuffle, seed, epoch):
    batch = 8
    parts = shares(STARTS, world, batch, shuffle, False, seed, epoch)
    nb = batches_per_rank(len(STARTS), batch, world, shuffle, False)
    assert all(len(p) == nb * batch for p in parts)
    used = np.concatenate(parts)
    assert set(used.tolist()) == set(STARTS.tolist())  # the epoch is covered
    # only the padding repeats: a window is seen at most twice here
    _, counts = np.unique(used, return_counts=True)
    assert counts.max() <= 2 and counts.sum() - len(STARTS) == world * nb * batch - len(STARTS)


def test_global_padding_wraps_around_even_when_windows_are_fewer_than_a_step():
    parts = shares(np.arange(5), 3, 4, "global", False, seed=1)
    assert [len(p) for p in parts] == [4, 4, 4]
    assert set(np.concatenate(parts).tolist()) == set(range(5))


@pytest.mark.parametrize("shuffle", ["local", "none"])
def test_local_blocks_are_the_ranks_own_contiguous_ranges(shuffle):
    world = 4
    for rank, part in enumerate(shares(STARTS, world, 5, shuffle, True, seed=2, epoch=5)):
        lo, hi = block_bounds(len(STARTS), world, rank)
        assert np.isin(part, STARTS[lo:hi]).all()
        if shuffle == "none":
            assert np.array_equal(part, STARTS[lo:lo + len(part)])  # in order


@pytest.mark.parametrize("shuffle", ["global", "local"])
def test_order_changes_across_epochs_and_repeats_across_calls(shuffle):
    first = shares(STARTS, 3, 8, shuffle, True, seed=11, epoch=0)
    again = shares(STARTS, 3, 8, shuffle, True, seed=11, epoch=0)
    second = shares(STARTS, 3, 8, shuffle, True, seed=11, epoch=1)
    other_seed = shares(STARTS, 3, 8, shuffle, True, seed=12, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other_seed))
    if shuffle == "local":  # the same windows, in another order
        assert all(set(a) <= set(STARTS[slice(*block_bounds(len(STARTS), 3, r))])
                   for r, a in enumerate(second))


def test_single_rank_global_is_a_permutation_of_the_kept_windows():
    (part,) = shares(STARTS, 1, 10, "global", True, seed=4, epoch=2)
    assert len(part) == 200 and len(set(part.tolist())) == 200
    assert not np.array_equal(np.sort(part), part)  # shuffled


def test_too_few_windows_for_one_batch_per_rank_is_a_user_error():
    with pytest.raises(UserError, match="no full batch"):
        rank_window_starts(np.arange(20), 0, 4, 8, shuffle="global", drop_last=True)
    with pytest.raises(UserError, match="no full batch"):
        rank_window_starts(np.arange(3), 0, 4, 8, shuffle="local", drop_last=False)
    with pytest.raises(UserError, match="shuffle 'random' is not one of"):
        rank_window_starts(STARTS, 0, 1, 8, shuffle="random")
    with pytest.raises(ValueError, match="rank 4 outside"):
        rank_window_starts(STARTS, 4, 4, 8)
    assert SHUFFLE_MODES == ("global", "local", "none")


@pytest.mark.parametrize("num_windows, world", [(203, 3), (10, 4), (2, 5), (0, 2)])
def test_eval_shards_cover_in_order(num_windows, world):
    starts = np.arange(num_windows) * 2
    parts = [eval_shard(starts, r, world) for r in range(world)]
    assert np.array_equal(np.concatenate(parts), starts)  # contiguous, in order
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    if num_windows < world:
        assert 0 in sizes  # some rank has nothing (its sums are zeros in the allreduce)
