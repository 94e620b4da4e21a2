"""The cluster configs in jobs/configs/ parse and validate (every key, the model's parameters),
and the two PGT-I-scale ones plan (`pgti train --dry-run`) on the small demo dataset.

The configs name real-size datasets (data/<name>.h5). The dry runs of metr-la.toml and
pems-bay.toml (on their synthetic presets) are left out here: planning measures one sample's
forward and backward of their models, ~5-15 s each on 2 cores, for no check that loading
the config does not already make."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from testlib import REPO

CONFIGS = ["metr-la", "pems-bay", "pems-all-la", "pems"]

# One interpreter for all four dry runs (torch is imported once).
DRY_RUNS = """
import contextlib, io, json, sys
from pgti.cli import main
results = {}
for name in sys.argv[2:]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = main(["train", "--config", f"jobs/configs/{name}.toml", "--dry-run", "--set", f"data.path={sys.argv[1]}"])
    results[name] = [status, out.getvalue()]
print(json.dumps(results))
"""


@pytest.mark.parametrize("name", CONFIGS)
def test_config_loads_and_documents_pgti(name):
    from pgti.config import load_config

    path = REPO / "jobs" / "configs" / f"{name}.toml"
    cfg = load_config(path)
    assert cfg.data.path == f"data/{name}.h5"
    from pgti.models.registry import get_spec

    known = get_spec(cfg.model.name).hyperparameters  # the model's keyword arguments
    assert set(cfg.model.params) <= set(known), (cfg.model.params, known)
    text = path.read_text()
    assert "PGT-I's settings" in text and "recommended" in text


def test_configs_dry_run(demo_data):
    names = ["pems-all-la", "pems"]
    proc = subprocess.run([sys.executable, "-c", DRY_RUNS, str(demo_data), *names], capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in names:
        status, text = results[name]
        assert status == 0 and text.startswith("config ok:"), (name, text)
