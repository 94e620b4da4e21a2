"""What a benchmark checks before it starts work: counts are positive, and the batch fits the
dataset's training split on every rank, with the rule and the message of `pgti train`
(`pgti.distributed.partition.rank_window_starts`). A benchmark that cannot fill one batch
would otherwise spin without output (a batch larger than the dataset) or divide by zero."""
from __future__ import annotations

from pgti.errors import UserError


def at_least(option: str, value: int | None, low: int = 1) -> None:
    if value is not None and value < low:
        raise UserError(f"{option} {value}: must be >= {low}")


def counts(option: str, text: str) -> list[int]:
    """A comma-separated list of rank counts, each >= 1."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{option} {text!r}: give counts like 1,2,4") from None
    if not values or min(values) < 1:
        raise UserError(f"{option} {text!r}: give counts >= 1, like 1,2,4")
    return values


def check_batch(data, batch_size: int, ranks: int = 1, input_steps: int = 12, output_steps: int = 12,
                shuffle: str = "global") -> None:
    """One UserError, in pgti train's words, when the training split of `data` (DCRNN's
    70/10/20 split, the benchmarks' split) gives no full batch of `batch_size` to each of
    `ranks` ranks."""
    from pgti.data.format import DatasetInfo, open_dataset
    from pgti.data.splits import make_splits
    from pgti.distributed import partition

    at_least("--batch-size", batch_size)
    info = data if isinstance(data, DatasetInfo) else open_dataset(data)
    try:
        train = make_splits(info.num_steps, input_steps, output_steps)["train"]
        partition.rank_window_starts(train, 0, ranks, batch_size, seed=0, epoch=0, shuffle=shuffle, drop_last=True)
    except (ValueError, UserError) as exc:
        raise UserError(f"{info.path}: {exc} (--batch-size {batch_size}" + (f", {ranks} ranks)" if ranks > 1 else ")")) \
            from None
