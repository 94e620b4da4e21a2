"""Fixtures of the multi-host suite: a 2-host cluster (tests/clusterlib.py) and its data.

The hosts' names are in no /etc/hosts and no DNS, as on many clusters where node names do
not resolve from the compute nodes: nothing of pgti may depend on resolving a hostname.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from clusterlib import VirtualCluster
from testlib import synth_dataset


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Two hosts node1 and node2, two slots each; the session's tmp directory is shared."""
    reason = VirtualCluster.unavailable()
    if reason:
        pytest.skip(f"no multi-host cluster on this machine: {reason}")
    hosts = VirtualCluster(tmp_path_factory.mktemp("cluster"), hosts=2, slots=2, resolvable=False,
                           shared=[tmp_path_factory.getbasetemp()])
    hosts.up()
    yield hosts
    hosts.down()


@pytest.fixture(scope="session")
def cluster_data(tmp_path_factory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("clusterdata") / "d.h5", num_nodes=24, num_steps=800, seed=5)
