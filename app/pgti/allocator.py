"""Keep freed tensor memory in the process heap (glibc), so a training step does not fault in
fresh pages for every activation it allocates.

torch's CPU allocator is plain `malloc`. glibc maps every block above its mmap threshold
(at most 32 MiB, dynamic) with `mmap` and unmaps it on `free`, and trims the heap's free top
above 128 KiB. A training step allocates and frees the same activation-sized blocks again and
again, so each one comes back as fresh zero pages: one page fault per 4 KiB, each with the
kernel's zeroing. Measured on the pems-bay preset, B = 64, 2 threads: an A3T-GCN step took
~150,000 minor faults (~600 MB of fresh pages) and 0.65-0.73 s; with freed blocks kept in the
heap, 0-2 faults and 0.53-0.56 s (docs/benchmarks.md, "Model steps against this machine's
bound", for the other models and the end-to-end figures).

`configure_allocator()` makes glibc serve every block from the heap (`M_MMAP_MAX = 0`) and
not trim it on free (`M_TRIM_THRESHOLD = -1`); training still hands the free heap back once
per epoch, between training and validation (`release_free_heap`). The resident set then stays
at the step's high-water mark instead of breathing with it: measured 0-20% above glibc's peak
(fragmentation). glibc still maps a block where the heap cannot grow, and a thread other than
the main one gets blocks above 64 MiB mapped (its arena's limit).

`PGTI_MALLOC=system` keeps glibc's defaults. Any malloc setting of the user's own (the
`MALLOC_MMAP_THRESHOLD_`/`MMAP_MAX_`/`TRIM_THRESHOLD_`/`TOP_PAD_` variables, `glibc.malloc`
tunables, a preloaded allocator: jemalloc, tcmalloc, tbbmalloc, ...) wins, and so do the
benchmark children that measure memory: `pgti bench model`'s pins the mmap threshold, and
`pgti bench loader` / `pgti bench memory` measure data placements under glibc's defaults.
"""
from __future__ import annotations

import ctypes
import os

from pgti.errors import UserError

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_MAX = -4
MODES = ("heap", "system")
_applied: str | None = None


_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def _user_setting(environ) -> str | None:
    """The user's own malloc setting, if any (it wins over pgti's)."""
    for name in _USER_VARIABLES:
        if name in environ:
            return name
    tunables = environ.get("GLIBC_TUNABLES", "")
    if any(key in tunables for key in ("malloc.mmap", "malloc.trim", "malloc.top_pad", "malloc.hugetlb")):
        return "GLIBC_TUNABLES"
    if "malloc" in environ.get("LD_PRELOAD", ""):  # jemalloc, tcmalloc, mimalloc, tbbmalloc_proxy, ...
        return "LD_PRELOAD"
    try:
        with open("/etc/ld.so.preload") as f:
            if "malloc" in f.read():
                return "/etc/ld.so.preload"
    except OSError:
        pass
    return None


def configure_allocator(environ=None) -> str:
    """Apply `PGTI_MALLOC` once per process. Returns what holds: "heap" (applied here),
    "system" (glibc's defaults), "user: NAME" (the user's own setting) or "not glibc"."""
    global _applied
    environ = os.environ if environ is None else environ
    mode = environ.get("PGTI_MALLOC", "heap").strip().lower() or "heap"
    if mode not in MODES:
        raise UserError(f"PGTI_MALLOC={environ['PGTI_MALLOC']!r}: not a mode; use one of "
                        f"{', '.join(MODES)} (heap: keep freed memory in the heap, the default)")
    if _applied is not None:
        return _applied
    user = _user_setting(environ)
    if mode == "system" or user:
        _applied = "system" if mode == "system" else f"user: {user}"
        return _applied
    try:
        libc = ctypes.CDLL(None)
        glibc = hasattr(libc, "gnu_get_libc_version")  # musl and macOS have other allocators
    except OSError:
        glibc = False
    if not glibc:
        _applied = "not glibc"
        return _applied
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, -1) == 1
    _applied = "heap" if applied else "system"
    return _applied


def release_free_heap() -> None:
    """Hand the heap's free pages back to the kernel (glibc `malloc_trim`; elsewhere a no-op).

    Training calls it between training and validation: the training step's freed activations
    stay in the heap, and validation's differently shaped tensors would otherwise be added on
    top of them (measured at full-PeMS scale: +0.15 GB per rank, enough to take a node from
    1.45x to 1.50x the raw array). `pgti bench model` calls it before it starts a memory
    child, so the child does not run beside the parent's kept high-water mark."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass
