"""Node-shared arrays: one copy of an array per node, mapped zero-copy by every local rank.

`SharedArray(world, shape, dtype)` is an `MPI.Win.Allocate_shared` window of the node
communicator. The node leader (local rank 0) allocates all the bytes, the other local ranks
allocate none and map the leader's segment (`Win.Shared_query(0)`), so the node holds the
array once whatever its number of ranks. Everyone sees it as a numpy array (`.array`) or a
torch tensor (`.tensor()`), both views of the same physical pages.

Who writes: the leader fills `.array` (the other ranks' views are read-only from the start),
then every local rank calls `.seal()`: a fence and a barrier of the node, after which all
ranks see the filled bytes and every view, the leader's included, is read-only. Nobody writes
after that; the training code only reads (index-batching gathers copy out of it).

Freeing is collective over the node (`Win.Free`): `.free()` (or leaving a `with` block
without an exception) on every local rank, or `World.close()`, which runs at interpreter exit
and frees whatever is still open. Views taken before `.free()` must not be used after it: the
pages are unmapped.
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from pgti.distributed.world import World

ALIGNMENT = 64  # bytes: a cache line, and enough for any SIMD load of the gathers
_BFLOAT16 = "bfloat16"  # numpy has none: stored as its uint16 bit pattern, viewed by torch


def storage_numpy_dtype(dtype) -> np.dtype:
    """The numpy dtype that stores `dtype` ("bfloat16" -> uint16 bits)."""
    return np.dtype(np.uint16) if str(dtype) == _BFLOAT16 else np.dtype(dtype)


class SharedArray:
    """A `shape` array of `dtype` in node-shared memory (bytes: prod(shape) * itemsize, once
    per node). Collective over `world.node_comm`: every local rank constructs it with the same
    shape and dtype, in the same order as its other shared arrays.

    dtype  any numpy dtype, or "bfloat16" (kept as uint16 bits in `.array`; `.tensor()` is
           a torch.bfloat16 view).
    attrs  free-form metadata, e.g. the time span a signal array covers.
    """

    def __init__(self, world: "World", shape, dtype="float32", *, alignment: int = ALIGNMENT):
        from mpi4py import MPI

        self.shape = tuple(int(s) for s in shape)
        self.dtype_name = str(np.dtype(dtype)) if str(dtype) != _BFLOAT16 else _BFLOAT16
        self.dtype = storage_numpy_dtype(dtype)
        self.nbytes = math.prod(self.shape) * self.dtype.itemsize
        self.is_owner = world.is_leader
        self.node_comm = world.node_comm
        self.attrs: dict = {}
        # The leader over-allocates by `alignment` so the array can start on an aligned address
        # whatever the MPI library returns (Open MPI gives page-aligned segments today).
        size = self.nbytes + alignment if self.is_owner else 0
        self.win = MPI.Win.Allocate_shared(size, 1, comm=self.node_comm)
        segment, _ = self.win.Shared_query(0)
        raw = np.frombuffer(segment, dtype=np.uint8)
        offset = (-raw.ctypes.data) % alignment
        self.array: np.ndarray | None = raw[offset:offset + self.nbytes].view(self.dtype).reshape(self.shape)
        if not self.is_owner:
            self.array.flags.writeable = False
        self._world = world
        world._shared.append(self)

    # ------------------------------------------------------------------ views

    def tensor(self) -> "torch.Tensor":
        """A torch view of `.array` (zero copy; torch.bfloat16 for "bfloat16" storage).

        torch warns that it cannot protect a read-only numpy array from writes; nobody writes
        to a sealed shared array, so that one warning is silenced here."""
        import torch

        array = self._require_open()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
            tensor = torch.from_numpy(array)
        return tensor.view(torch.bfloat16) if self.dtype_name == _BFLOAT16 else tensor

    def __array__(self, dtype=None, copy=None):
        array = self._require_open()
        return array if dtype is None else array.astype(dtype)

    # ------------------------------------------------------------------ life cycle

    def seal(self) -> "SharedArray":
        """Collective over the node: the leader's writes become visible to every local rank,
        and every view becomes read-only. Call it once the leader has filled the array."""
        from mpi4py import MPI

        array = self._require_open()
        # Fence is MPI's memory-synchronisation call for window memory; the barrier guarantees
        # no rank returns before the leader finished writing, whatever the MPI's fence does.
        self.win.Fence(MPI.MODE_NOSUCCEED)
        self.node_comm.Barrier()
        array.flags.writeable = False
        return self

    def free(self) -> None:
        """Release the node's copy. Collective over the node: every local rank calls it."""
        if self.win is None:
            return
        self.array = None
        win, self.win = self.win, None
        win.Free()
        if self in self._world._shared:
            self._world._shared.remove(self)

    @property
    def freed(self) -> bool:
        return self.win is None

    def __enter__(self) -> "SharedArray":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # After an exception the other ranks may not reach a collective free: leave the
        # window to World.close() / process exit (or to abort_on_error's Abort).
        if exc_type is None:
            self.free()

    def _require_open(self) -> np.ndarray:
        if self.array is None:
            raise ValueError("this SharedArray was freed")
        return self.array

    def __repr__(self) -> str:
        state = "freed" if self.freed else ("owner" if self.is_owner else "mapped")
        return f"SharedArray(shape={self.shape}, dtype={self.dtype_name}, {self.nbytes} bytes, {state})"
