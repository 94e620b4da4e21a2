"""Fixtures of the training suites."""
from __future__ import annotations

from pathlib import Path

import pytest

from testlib import synth_dataset


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("data") / "tiny.h5", num_nodes=20, num_steps=1500, seed=3)
