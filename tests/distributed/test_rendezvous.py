"""pgti.distributed.rendezvous on one host: the address, the interface, the user's overrides.
Across real hosts: tests/cluster/test_train.py (DDP meets at node1's bridge address)."""
import json
import os

import pytest
from distributed_helpers import HERE

from pgti.distributed.rendezvous import interface_with, interfaces, matching_interfaces
from testlib import run_mpi


def rendezvous_rows(**env) -> tuple[list[dict], str, int]:
    environment = {k: v for k, v in os.environ.items() if k not in ("GLOO_SOCKET_IFNAME", "PGTI_MASTER_ADDR")}
    proc = run_mpi(2, [HERE / "mpi_rendezvous.py"], timeout=60, env={**environment, **env})
    rows = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("RDV ")]
    return sorted(rows, key=lambda r: r["rank"]), proc.stdout + proc.stderr, proc.returncode


def test_interfaces_include_loopback():
    found = {name: (address, loopback) for name, address, loopback in interfaces()}
    assert found["lo"] == ("127.0.0.1", True)
    assert interface_with("127.0.0.1") == "lo" and interface_with("192.0.2.1") is None  # TEST-NET: nobody's


def test_interface_names_follow_each_backends_rules():
    names = lambda value, backend: [i[0] for i in matching_interfaces(value, backend)]  # noqa: E731
    assert names("lo", "gloo") == ["lo"] and names("l", "gloo") == []  # gloo: exact names
    assert names("l", "nccl") == ["lo"] and names("=l", "nccl") == []  # NCCL: prefixes, `=` exact
    assert "lo" not in names("^lo", "nccl") and names("^lo", "nccl") == [i[0] for i in interfaces() if i[0] != "lo"]


@pytest.mark.mpi
def test_one_node_meets_on_loopback_and_binds_gloo_there():
    rows, text, status = rendezvous_rows()
    assert status == 0 and len(rows) == 2, text
    assert rows[0]["address"] == rows[1]["address"] == "127.0.0.1" and rows[0]["port"] == rows[1]["port"] > 0
    assert rows[0]["how"] == "one host: loopback" and {r["ifname"] for r in rows} == {"lo"}


@pytest.mark.mpi
def test_the_users_address_and_interface_win():
    rows, text, status = rendezvous_rows(PGTI_MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo")
    assert status == 0 and len(rows) == 2, text
    assert rows[0]["how"] == "PGTI_MASTER_ADDR=127.0.0.1" and {r["ifname"] for r in rows} == {"lo"}


@pytest.mark.mpi
def test_an_interface_that_does_not_exist_is_one_line_on_every_rank():
    rows, text, status = rendezvous_rows(GLOO_SOCKET_IFNAME="nosuch0")
    assert status == 2 and not rows, text
    assert text.count("GLOO_SOCKET_IFNAME='nosuch0': rank 0's host (") == 1 and "Traceback" not in text, text
