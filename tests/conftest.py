"""Suite-wide fixtures: CUDA/MPI availability, a small random dataset factory, CLI runner."""
from __future__ import annotations

import pytest

from clusterlib import VirtualCluster
from testlib import write_random_dataset  # tests/ is on pytest's pythonpath: see setup.cfg


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def virtual_hosts(tmp_path_factory):
    """Two hosts node1 and node2 (tests/clusterlib.py), two slots each, when this machine can
    make them; None when it cannot. The session's tmp directory is shared by both. Their names
    are in no /etc/hosts and no DNS, as on many clusters whose compute nodes do not resolve
    each other's names: nothing of pgti may depend on resolving a hostname."""
    if VirtualCluster.unavailable():
        yield None
        return
    hosts = VirtualCluster(tmp_path_factory.mktemp("cluster"), hosts=2, slots=2, resolvable=False,
                           shared=[tmp_path_factory.getbasetemp()])
    hosts.up()
    yield hosts
    hosts.down()


@pytest.fixture(scope="session")
def cluster(virtual_hosts):
    """The two hosts; the test is skipped, with the reason, where this machine cannot make them."""
    if virtual_hosts is None:
        pytest.skip(f"no multi-host cluster on this machine: {VirtualCluster.unavailable()}")
    return virtual_hosts


@pytest.fixture
def make_dataset(tmp_path):
    """Write a small random pgti dataset (`testlib.write_random_dataset`) under tmp_path;
    returns its path. Values are exact float32."""

    def make(name="d.h5", T=500, N=7, C=2, seed=0, missing=0.05, interval=300, start=1_330_560_000, **kw):
        return write_random_dataset(tmp_path / name, T, N, C, seed, missing, interval, start, **kw)

    return make


@pytest.fixture
def pgti_cli(capsys):
    """Run the CLI in-process: returns (exit_status, stdout, stderr)."""
    from pgti.cli import main

    def run(*argv):
        status = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


@pytest.fixture
def one_thread():
    """One torch thread for the test: tiny tensors, and on a busy 2-core machine every parallel
    region (MKL's sparse products start one whatever the size) can wait a whole scheduler
    slice for its second thread. Results do not depend on the thread count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def graph():
    """A random directed weighted 8-node graph `(edge_index, edge_weight, num_nodes)`."""
    from models.helpers_graph import make_graph

    edge_index, edge_weight = make_graph(8, 16, seed=0)
    return edge_index, edge_weight, 8
