"""The multi-host suite: every test here is marked `cluster`; its dataset. The hosts
themselves are the session's `cluster` fixture (tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from testlib import synth_dataset


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster_data(tmp_path_factory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("clusterdata") / "d.h5", num_nodes=24, num_steps=800, seed=5)
