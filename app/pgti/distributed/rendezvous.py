"""Where torch.distributed's ranks meet: chosen from the MPI launch, never from hostnames.

`rendezvous(world, backend)` returns `(address, port, how)`: an address of rank 0's host that
every rank can reach, a free port there, and a few words on how the address was chosen. It
also sets, on each rank, the interface gloo (`GLOO_SOCKET_IFNAME`) or NCCL
(`NCCL_SOCKET_IFNAME`) binds its own sockets to, unless the user set it: the interface this
rank's traffic to that address leaves by. Without that, gloo resolves the host's own name,
which on many clusters maps to 127.0.0.1, and the other hosts get "Connection refused".

The address, in order of precedence:
  1. `PGTI_MASTER_ADDR` (rank 0's environment), as given;
  2. rank 0's IPv4 addresses on the interfaces `GLOO_SOCKET_IFNAME` / `NCCL_SOCKET_IFNAME`
     selects (gloo: exact names; NCCL: prefixes, `=` exact, `^` excluded);
  3. one host: 127.0.0.1 (every rank is on rank 0's host);
  4. several hosts: rank 0's non-loopback IPv4 addresses.
On several hosts the candidates, a given one too, are probed over TCP from one rank of every
other host, and the first that all of them reach wins; none is one line on every rank (exit 2)
instead of a hang in `init_process_group`. Every decision is rank 0's, broadcast over MPI.
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


def matching_interfaces(value: str, backend: str) -> list[tuple[str, str, bool]]:
    """The interfaces of this host that `GLOO_SOCKET_IFNAME` / `NCCL_SOCKET_IFNAME` = `value`
    selects, with the backend's rules: gloo takes exact names (comma-separated); NCCL takes
    name prefixes, exact names after `=`, and excludes the listed prefixes after `^`."""
    found = interfaces()
    if backend == "gloo":
        wanted = [n.strip() for n in value.split(",") if n.strip()]
        return [i for i in found if i[0] in wanted]
    exclude, exact = value.startswith("^"), value.lstrip("^").startswith("=")
    names = [n.strip() for n in value.lstrip("^").lstrip("=").split(",") if n.strip()]

    def named(iface: str) -> bool:
        return iface in names if exact else any(iface.startswith(n) for n in names)

    return [i for i in found if named(i[0]) != exclude]


def _rank0_choice(backend: str, hosts: int) -> tuple[list[str], str]:
    """Rank 0: the candidate addresses and how they were found; a UserError when none can work."""
    given = os.environ.get(MASTER_ADDR_ENV, "").strip()
    if given:
        return [given], f"{MASTER_ADDR_ENV}={given}"
    var = IFNAME_ENV[backend]
    value = os.environ.get(var, "").strip()
    if value:
        chosen = [addr for _, addr, _ in matching_interfaces(value, backend)]
        if not chosen:
            raise UserError(f"{var}={value!r}: rank 0's host ({socket.gethostname()}) has no such interface with an "
                            f"IPv4 address that is up (it has {', '.join(i for i, _, _ in interfaces())}); set {var} "
                            "to one of those, or unset it")
        return chosen, f"{var}={value}"
    if hosts == 1:
        return ["127.0.0.1"], "one host: loopback"
    candidates = [addr for _, addr, loop in interfaces() if not loop]
    if not candidates:
        raise UserError(f"rank 0's host ({socket.gethostname()}) has no non-loopback IPv4 address, but the job spans "
                        f"{hosts} hosts; set {MASTER_ADDR_ENV} to an address every host reaches")
    return candidates, "reached from every host"


def _common(candidates: list[str], reached: list, how: str) -> str:
    """Rank 0: the first candidate every probing host reached."""
    sets = [set(r) for r in reached if r is not None]
    common = [a for a in candidates if all(a in s for s in sets)]
    if not common:
        raise UserError(f"rank 0's address{'es' if len(candidates) > 1 else ''} {', '.join(candidates)} ({how}) "
                        f"{'are' if len(candidates) > 1 else 'is'} not reachable over TCP from every host; set "
                        f"{MASTER_ADDR_ENV} to an address that is, or name the interface with GLOO_SOCKET_IFNAME / "
                        "NCCL_SOCKET_IFNAME")
    return common[0]


def _bind_here(address: str, backend: str) -> str | None:
    """This rank's check of the interface its backend binds: the user's must exist here, ours is
    the one the route to `address` leaves by (set for the backend). A UserError names the fix."""
    var = IFNAME_ENV[backend]
    value = os.environ.get(var, "").strip()
    if value:
        if not matching_interfaces(value, backend):
            raise UserError(f"{var}={value!r}: host {socket.gethostname()} has no such interface with an IPv4 "
                            f"address that is up (it has {', '.join(i for i, _, _ in interfaces())}); name one that "
                            "every host has, or unset it")
        return None
    try:
        iface = interface_with(source_address(address))
    except OSError as exc:
        raise UserError(f"the rendezvous address {address} cannot be used from host {socket.gethostname()} "
                        f"({exc.strerror or exc}); set {MASTER_ADDR_ENV} to an address every host reaches") from None
    if iface is not None:
        os.environ[var] = iface
    return iface


def rendezvous(world, backend: str) -> tuple[str, int, str]:
    """Collective over `world.comm`: (address, port, how) of rank 0's TCP store; sets this
    rank's socket interface for `backend` unless the user did. The same UserError on every
    rank (reported once, by rank 0) if no address works. On several hosts the address, also
    one the user gave, is first probed over TCP from one rank of every other host, so a wrong
    one is one line at once, not a hang in `init_process_group`."""
    from mpi4py import MPI

    from pgti.distributed.failfast import raise_if_any_failed, run_on_root

    # Hosts, not `world.num_nodes`: PGTI_RANKS_PER_NODE's pretend nodes share one host.
    names = world.comm.allgather(MPI.Get_processor_name())
    hosts = len(set(names))
    candidates, how = run_on_root(world, _rank0_choice, backend, hosts)
    if hosts > 1:
        listener = _Listener() if world.rank == 0 else None
        port = world.comm.bcast(listener.port if listener else None, root=0)
        # One rank per other host probes (the same host reaches the same addresses).
        first_on_host = names.index(names[world.rank]) == world.rank
        probing = first_on_host and names[world.rank] != names[0]
        reached = world.comm.gather(_reachable(candidates, port) if probing else None, root=0)
        if listener is not None:
            listener.close()
        candidates = [run_on_root(world, _common, candidates, reached, how)]
    address = candidates[0]
    port = world.comm.bcast(_free_port() if world.rank == 0 else None, root=0)
    error = None
    try:
        _bind_here(address, backend)
    except UserError as exc:
        error = exc
    raise_if_any_failed(world, error)
    return address, port, how
