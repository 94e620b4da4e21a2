"""Keep freed tensor memory in the process heap (glibc), so a training step does not fault in
fresh pages for every activation it allocates.

torch's CPU allocator is plain `malloc`. glibc maps every block above its mmap threshold
(at most 32 MiB, dynamic) with `mmap` and unmaps it on `free`, and trims the heap's free top
above 128 KiB. A training step allocates and frees the same activation-sized blocks again and
again, so each one comes back as fresh zero pages: one page fault per 4 KiB, each with the
kernel's zeroing. Measured on the pems-bay preset, B = 64, 2 threads: an A3T-GCN step took
~150,000 minor faults (~600 MB of fresh pages) and 0.73 s; with freed blocks kept in the heap,
0-2 faults and 0.55 s. Graph WaveNet: 4.0 -> 3.2-3.7 s, DCRNN: 6.0 -> 5.6 s.

`configure_allocator()` makes glibc serve every block from the heap (`M_MMAP_MAX = 0`) and
never trim it (`M_TRIM_THRESHOLD = -1`). The resident set then stays at the step's high-water
mark instead of breathing with it, a few percent to ~20% higher than the live tensors at the
peak (fragmentation). glibc still falls back to `mmap` where the heap cannot grow.

`PGTI_MALLOC=system` keeps glibc's defaults. Any malloc setting of the user's own
(`MALLOC_*_` variables, `glibc.malloc` tunables, a preloaded jemalloc/tcmalloc) wins, and so
does `pgti bench model`'s memory child, which pins the mmap threshold on purpose.
"""
from __future__ import annotations

import ctypes
import os

from pgti.errors import UserError

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_MAX = -4
MODES = ("heap", "system")
_applied: str | None = None


def _user_setting(environ) -> str | None:
    """The user's own malloc setting, if any (it wins over pgti's)."""
    for name in environ:
        if name.startswith("MALLOC_") and name.endswith("_"):
            return name
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    preload = environ.get("LD_PRELOAD", "")
    if "jemalloc" in preload or "tcmalloc" in preload or "mimalloc" in preload:
        return "LD_PRELOAD"
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
