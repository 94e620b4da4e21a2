"""Fixtures of the training suites."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "tiny.h5"
    from pgti.data.synth import SynthSpec, generate

    generate(SynthSpec(num_nodes=20, num_steps=1500, seed=3), path, progress=False)
    return path
