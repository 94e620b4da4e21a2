"""Where torch.distributed's ranks meet: chosen from the MPI launch, never from hostnames.

`rendezvous(world, backend)` returns `(address, port, how)`: an address of rank 0's host that
every rank can reach, a free port there, and a few words on how the address was chosen. It
also sets, on each rank, the interface gloo (`GLOO_SOCKET_IFNAME`) or NCCL
(`NCCL_SOCKET_IFNAME`) binds its own sockets to, unless the user set it: the interface this
rank's traffic to that address leaves by. Without that, gloo resolves the host's own name,
which on many clusters maps to 127.0.0.1, and the other hosts get "Connection refused".

The address, in order of precedence:
  1. `PGTI_MASTER_ADDR` (rank 0's environment), as given;
  2. rank 0's IPv4 address on the first interface of `GLOO_SOCKET_IFNAME` / `NCCL_SOCKET_IFNAME`;
  3. one node: 127.0.0.1 (every rank is on rank 0's host);
  4. several nodes: rank 0's non-loopback IPv4 addresses are probed over TCP from one rank of
     every other node, and the first that all of them reach wins.
Every decision is rank 0's, broadcast over MPI, so all ranks use the same one.
"""
from __future__ import annotations

import fcntl
import os
import socket
import struct
import threading

from pgti.errors import UserError

MASTER_ADDR_ENV = "PGTI_MASTER_ADDR"
IFNAME_ENV = {"gloo": "GLOO_SOCKET_IFNAME", "nccl": "NCCL_SOCKET_IFNAME"}
_SIOCGIFFLAGS, _SIOCGIFADDR, _IFF_UP, _IFF_LOOPBACK = 0x8913, 0x8915, 0x1, 0x8
PROBE_TIMEOUT_S = 3.0


def _ioctl(sock: socket.socket, request: int, name: str) -> bytes | None:
    try:
        return fcntl.ioctl(sock.fileno(), request, struct.pack("256s", name.encode()[:15]))
    except OSError:
        return None


def interfaces() -> list[tuple[str, str, bool]]:
    """(name, IPv4 address, is_loopback) of every interface that is up and has an address."""
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            flags, addr = _ioctl(s, _SIOCGIFFLAGS, name), _ioctl(s, _SIOCGIFADDR, name)
            if flags is None or addr is None:
                continue
            bits = struct.unpack("H", flags[16:18])[0]
            if bits & _IFF_UP:
                found.append((name, socket.inet_ntoa(addr[20:24]), bool(bits & _IFF_LOOPBACK)))
    return found


def interface_with(address: str) -> str | None:
    """The interface that holds `address` (None if none here does)."""
    for name, addr, _ in interfaces():
        if addr == address:
            return name
    return "lo" if address.startswith("127.") else None


def source_address(address: str) -> str:
    """This host's own address on the route to `address` (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((address, 9))
        return s.getsockname()[0]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _reachable(candidates: list[str], port: int) -> list[str]:
    ok = []
    for address in candidates:
        try:
            with socket.create_connection((address, port), timeout=PROBE_TIMEOUT_S):
                ok.append(address)
        except OSError:
            pass
    return ok


class _Listener:
    """Accepts (and closes) probe connections on all of rank 0's addresses until stopped."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except OSError:
                continue

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.sock.close()


def _rank0_choice(world, backend: str) -> tuple[list[str], str]:
    """Rank 0: the candidate addresses and how they were found; a UserError when none can work."""
    given = os.environ.get(MASTER_ADDR_ENV, "").strip()
    if given:
        return [given], f"{MASTER_ADDR_ENV}={given}"
    var = IFNAME_ENV[backend]
    names = [n for n in os.environ.get(var, "").split(",") if n.strip()]
    if names:
        name = names[0].strip().lstrip("^=")
        for iface, addr, _ in interfaces():
            if iface == name:
                return [addr], f"{var}={name}"
        raise UserError(f"{var}={os.environ[var]!r}: rank 0's host ({socket.gethostname()}) has no interface "
                        f"{name!r} with an IPv4 address that is up (it has {', '.join(i for i, _, _ in interfaces())}); "
                        f"set {var} to one of those, or unset it")
    if world.num_nodes == 1:
        return ["127.0.0.1"], "one node: loopback"
    candidates = [addr for _, addr, loop in interfaces() if not loop]
    if not candidates:
        raise UserError(f"rank 0's host ({socket.gethostname()}) has no non-loopback IPv4 address, but the job spans "
                        f"{world.num_nodes} nodes; set {MASTER_ADDR_ENV} to an address every node reaches")
    return candidates, "reached by every node"


def _common(candidates: list[str], reached: list, backend: str) -> str:
    """Rank 0: the first candidate every probing node reached."""
    sets = [set(r) for r in reached if r is not None]
    common = [a for a in candidates if all(a in s for s in sets)]
    if not common:
        raise UserError(f"no address of rank 0's host ({', '.join(candidates)}) is reachable over TCP from every "
                        f"node; set {MASTER_ADDR_ENV} to one that is, or name the interface with {IFNAME_ENV[backend]}")
    return common[0]


def rendezvous(world, backend: str) -> tuple[str, int, str]:
    """Collective over `world.comm`: (address, port, how) of rank 0's TCP store; sets this
    rank's socket interface for `backend` unless the user did. The same UserError on every
    rank (reported once, by rank 0) if no address works."""
    from pgti.distributed.failfast import run_on_root

    candidates, how = run_on_root(world, _rank0_choice, world, backend)
    if len(candidates) > 1:
        listener = _Listener() if world.rank == 0 else None
        port = world.comm.bcast(listener.port if listener else None, root=0)
        # One rank per other node probes (the same host reaches the same addresses).
        probing = world.is_leader and world.node != 0
        reached = world.comm.gather(_reachable(candidates, port) if probing else None, root=0)
        if listener is not None:
            listener.close()
        candidates = [run_on_root(world, _common, candidates, reached, backend)]
    address = candidates[0]
    port = world.comm.bcast(_free_port() if world.rank == 0 else None, root=0)
    var = IFNAME_ENV[backend]
    if not os.environ.get(var):
        iface = interface_with(source_address(address))
        if iface is not None:
            os.environ[var] = iface
    return address, port, how
