"""pgti.allocator: freed tensor memory stays in the heap, so a repeated allocation of an
activation-sized block does not fault its pages in again; PGTI_MALLOC=system and the user's own
malloc settings keep glibc's behaviour. Each case runs in a fresh interpreter (mallopt is
process-wide and one-way)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# 16 Mi floats (64 MiB, above glibc's largest mmap threshold), allocated, touched and freed
# 16 times: the minor faults of the last rounds tell whether the pages came back from the heap.
# (The first rounds may grow the heap: torch's 64-byte aligned blocks leave glibc a small tail
# that Python's own objects take, so the next block of the same size may not fit in the hole.)
PROBE = """
import json, resource, sys
from pgti.allocator import configure_allocator
mode = configure_allocator()
import torch
faults = []
for _ in range(16):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t = torch.empty(16 << 20)
    t.fill_(1.0)
    del t
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"mode": mode, "faults": faults}))
"""
PAGES = (64 << 20) // os.sysconf("SC_PAGE_SIZE")


def probe(**env) -> dict:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "PGTI_MALLOC"}
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**base, **env},
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def _thp_always() -> bool:
    try:
        return "[always]" in open("/sys/kernel/mm/transparent_hugepage/enabled").read()
    except OSError:
        return False


pytestmark = [pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc: Linux only"),
              pytest.mark.skipif(_thp_always(), reason="transparent huge pages 'always': blocks fault in 2 MiB "
                                 "pages, and the 4 KiB fault count these tests read says nothing")]


def test_freed_blocks_are_reused_without_faulting_their_pages_in_again():
    heap = probe()
    assert heap["mode"] == "heap"
    assert max(heap["faults"][-4:]) < PAGES // 100, heap  # a few pages of bookkeeping at most


@pytest.mark.parametrize("env, mode", [({"PGTI_MALLOC": "system"}, "system"),
                                       ({"MALLOC_MMAP_THRESHOLD_": "131072"}, "user: MALLOC_MMAP_THRESHOLD_")])
def test_system_mode_and_the_users_own_setting_keep_glibcs_behaviour(env, mode):
    system = probe(**env)
    assert system["mode"] == mode
    assert min(system["faults"][-4:]) > PAGES // 2, system  # every round faults its block in again


def test_a_bad_mode_is_one_line(pgti_cli, monkeypatch):
    monkeypatch.setenv("PGTI_MALLOC", "fast")
    status, _, err = pgti_cli("data", "info", "missing.h5")
    assert status == 2 and err.strip().count("\n") == 0 and "PGTI_MALLOC='fast'" in err and "heap, system" in err, err
