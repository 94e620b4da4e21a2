"""Batches of a split: `IndexBatcher` iterates window starts in batches gathered from one raw
array (see pgti.data.windows), with a per-epoch order any rank can recompute, bit-exact
mid-epoch restart, optional prefetch in a background thread and reused output buffers.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np
import torch

from pgti.data.windows import Batch, WindowGather, WindowSpec
from pgti.errors import UserError


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed from (seed, epoch): any rank recomputes any epoch's order."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


def epoch_order(num_windows: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    """Positions 0..S-1 in this epoch's order, int64 `[S]` on the host: a `torch.randperm` from
    a CPU generator seeded by (seed, epoch) when shuffling (same on every machine for a given
    torch version), else 0..S-1."""
    if not shuffle:
        return torch.arange(num_windows)
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(num_windows, generator=generator)


def _resolve_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())  # compare equal to tensors' devices
    return device


class IndexBatcher:
    """Iterates one split's windows in batches gathered from the one raw array.

    signals        [T, N, C] numpy (read-only shared memory is fine) or torch; never written.
    timestamps     int64 [T] unix seconds (only used for calendar features).
    window_starts  int64 [S] steps: a split from `make_splits`, or a rank's own starts.
    batch_size     B; the last batch is smaller unless `drop_last`.
    spec, scaler   what a sample holds and how it is normalized (see `WindowGather`).
    shuffle, seed  per-epoch order from (seed, epoch): `set_epoch(epoch, start_batch=k)`
                   restarts epoch `epoch` at batch k, bit-exact, without communication.
    device         where batches are delivered ("cpu", "cuda", "cuda:1", ...).
    gather_on      "device" (default): the raw array is copied to `device` once at start
                   (GPU-index-batching: zero host-to-device copies per step); "host": it stays
                   in host memory (e.g. node-shared) and each batch is gathered on the CPU and
                   copied to `device`.
    storage_dtype  "float32" | "float16" | "bfloat16" | None (keep): reduced precision halves
                   the raw array's memory; batches always come out float32.
    pin_memory     host gathers go to page-locked buffers (fast, asynchronous copies to a GPU).
    prefetch       host gathers: a background thread gathers the next batch while the caller
                   works on this one.
    reuse_buffers  host gathers write into preallocated buffers instead of new tensors. A
                   yielded batch then stays valid only until the next batch is requested: clone
                   what you keep. One buffer pair when the batch is used where it is gathered
                   (the smallest cache footprint); a ring of three with prefetch or pinned
                   copies (one held by the caller, one queued or in flight, one being filled).
                   (Always on with pin_memory.)

    Yields `Batch(x [B, Tin, N, Cx], y [B, Tout, N, Cy], starts [B])`, all on `device`.
    """

    def __init__(self, signals, timestamps, window_starts, batch_size: int, spec: WindowSpec = WindowSpec(),
                 scaler=None, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False, device="cpu",
                 gather_on: str = "device", storage_dtype=None, pin_memory: bool = False, prefetch: bool = False,
                 reuse_buffers: bool = False):
        if gather_on not in ("device", "host"):
            raise ValueError(f"gather_on must be 'device' or 'host', got {gather_on!r}")
        device = _resolve_device(device)
        gather = WindowGather(signals, timestamps, spec, scaler, storage_dtype=storage_dtype,
                              device=device if gather_on == "device" else torch.device("cpu"))
        self._setup(gather, window_starts, batch_size, device, shuffle=shuffle, seed=seed, drop_last=drop_last,
                    pin_memory=pin_memory, prefetch=prefetch, reuse_buffers=reuse_buffers)

    @classmethod
    def over(cls, gather: WindowGather, window_starts, batch_size: int, *, device=None, shuffle: bool = False,
             seed: int = 0, drop_last: bool = False, pin_memory: bool = False, prefetch: bool = False,
             reuse_buffers: bool = False) -> "IndexBatcher":
        """A batcher over an existing gather (and so its raw array: on a GPU, the one device
        copy that a run's training, validation, test and predict batchers share). `device`:
        where batches go (default: the gather's device)."""
        self = cls.__new__(cls)
        self._setup(gather, window_starts, batch_size, _resolve_device(device or gather.device), shuffle=shuffle,
                    seed=seed, drop_last=drop_last, pin_memory=pin_memory, prefetch=prefetch,
                    reuse_buffers=reuse_buffers)
        return self

    def _setup(self, gather: WindowGather, window_starts, batch_size: int, device: torch.device, *, shuffle: bool,
               seed: int, drop_last: bool, pin_memory: bool, prefetch: bool, reuse_buffers: bool) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size {batch_size} must be >= 1")
        if pin_memory and not torch.cuda.is_available():
            raise UserError("pin_memory needs CUDA (page-locked memory only helps copies to a GPU); turn it off")
        self.gather, self.device = gather, device
        on_host = gather.device.type == "cpu"
        self.batch_size = int(batch_size)
        self.shuffle, self.seed, self.drop_last = shuffle, int(seed), drop_last
        self.pin_memory = pin_memory and on_host
        self.prefetch = prefetch and on_host
        self.reuse_buffers = (reuse_buffers or self.pin_memory) and on_host
        self.epoch, self.start_batch = 0, 0
        self.set_window_starts(window_starts)
        self._ring: list[tuple[torch.Tensor, torch.Tensor, object]] = []
        self._ring_size = 3 if (self.prefetch or self.device != gather.device) else 1

    # ------------------------------------------------------------------ epoch control

    def set_window_starts(self, window_starts) -> None:
        """Replace the starts (e.g. a rank's share for a new epoch); int64 `[S]` steps."""
        self.window_starts = torch.from_numpy(self.gather.check_starts(window_starts))

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch whose order the next iteration uses, starting at batch `start_batch`
        (resume: the batches then equal batches start_batch.. of an uninterrupted epoch)."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch {start_batch} outside [0, {len(self)}]")
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        """Batches in a full epoch."""
        count = len(self.window_starts)
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def epoch_starts(self) -> torch.Tensor:
        """This epoch's window starts in batch order, int64 `[S]` on the host."""
        return self.window_starts[epoch_order(len(self.window_starts), self.seed, self.epoch, self.shuffle)]

    # ------------------------------------------------------------------ iteration

    def __iter__(self) -> Iterator[Batch]:
        ordered = self.epoch_starts().to(self.gather.device)  # one small copy per epoch
        batches = range(self.start_batch, len(self))
        if self.prefetch:
            yield from self._prefetched(ordered, batches)
            return
        for k in batches:
            yield self._deliver(*self._host_or_device_batch(ordered, k))

    def _host_or_device_batch(self, ordered: torch.Tensor, k: int):
        starts = ordered[k * self.batch_size:(k + 1) * self.batch_size]
        slot = self._slot(k, starts.shape[0]) if self.reuse_buffers else None
        x, y = self.gather.gather(starts, *(slot[:2] if slot else (None, None)), validate=False)
        return x, y, starts, slot

    def _deliver(self, x, y, starts, slot) -> Batch:
        """Move a host-gathered batch to the device; record when its buffers are free again."""
        if x.device == self.device:
            return Batch(x, y, starts)
        x = x.to(self.device, non_blocking=self.pin_memory)
        y = y.to(self.device, non_blocking=self.pin_memory)
        starts = starts.to(self.device, non_blocking=self.pin_memory)
        if slot is not None and self.device.type == "cuda":
            slot[2].record()  # the ring slot may be refilled once this copy is done
        return Batch(x, y, starts)

    def _slot(self, k: int, batch: int):
        """Preallocated buffers for batch k (see `reuse_buffers` for the ring's size)."""
        if not self._ring:
            for _ in range(self._ring_size):
                x = torch.empty(self.gather.x_shape(self.batch_size), pin_memory=self.pin_memory)
                y = torch.empty(self.gather.y_shape(self.batch_size), pin_memory=self.pin_memory)
                event = torch.cuda.Event() if self.device.type == "cuda" else None
                self._ring.append((x, y, event))
        x, y, event = self._ring[k % len(self._ring)]
        if event is not None:
            event.synchronize()  # the previous copy out of this slot has finished
        return (x, y, event) if batch == self.batch_size else (x[:batch], y[:batch], event)

    def _prefetched(self, ordered: torch.Tensor, batches: range) -> Iterator[Batch]:
        """Gather batch k+1 in a background thread while the caller uses batch k."""
        ready: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def produce():
            try:
                for k in batches:
                    item = self._host_or_device_batch(ordered, k)
                    while not stop.is_set():
                        try:
                            ready.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ready.put(None)
            except BaseException as exc:  # handed to the caller's thread
                ready.put(exc)

        worker = threading.Thread(target=produce, name="pgti-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                item = ready.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield self._deliver(*item)
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(timeout=0.05)
