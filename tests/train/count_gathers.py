"""Runs one `pgti` command in this process and prints every `WindowGather` it built: how many,
and the address of the raw-array storage each one reads (a spy around the real class)."""
from __future__ import annotations

import json
import sys

from pgti.data import windows

built: list[dict] = []
_init = windows.WindowGather.__init__


def _recording_init(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    built.append({"storage": self.signals.untyped_storage().data_ptr(), "device": str(self.device),
                  "steps": self.num_steps})


windows.WindowGather.__init__ = _recording_init

from pgti.cli import main  # noqa: E402  (after the spy is in place)

code = main(sys.argv[1:])
print("GATHERS " + json.dumps(built), flush=True)
sys.exit(code)
