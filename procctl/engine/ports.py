"""Who listens on a TCP port. A tcp or http probe passes only for a listener
of the instance's own tree: a port someone else already holds answers the
probe too, and would make a service look ready that is about to fail with
"address already in use"."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Collection

from procctl.engine.lazypsutil import psutil

from procctl.engine.tree import owner

_ANY = frozenset({"0.0.0.0", "::"})


@dataclasses.dataclass(frozen=True)
class Holder:
    """A process that listens on a port, as far as it can be seen."""

    pid: int | None
    name: str = ""

    def __str__(self) -> str:
        if self.pid is None:
            return "a process procctl cannot see"
        return f"pid {self.pid} ({self.name})" if self.name else f"pid {self.pid}"


def describe(holders: list[Holder]) -> str:
    return ", ".join(str(holder) for holder in holders)


def _local_addresses() -> frozenset[str]:
    found = {"127.0.0.1", "::1", "0.0.0.0", "::"}
    for addrs in psutil.net_if_addrs().values():
        found.update(addr.address.split("%", 1)[0] for addr in addrs if addr.family in (socket.AF_INET, socket.AF_INET6))
    return frozenset(found)


def addresses(host: str) -> frozenset[str]:
    """The addresses `host` stands for (none when it cannot be resolved:
    then any listener on the port counts)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(str(info[4][0]) for info in infos)


def _reaches(listener_ip: str, targets: frozenset[str]) -> bool:
    """Whether a connection to one of `targets` can land on a socket listening
    on `listener_ip` (a wildcard listener takes every address)."""
    if not targets or listener_ip in _ANY or listener_ip in targets:
        return True
    return listener_ip.startswith("::ffff:") and listener_ip[7:] in targets


def listeners(host: str, port: int) -> list[Holder]:
    """Every process listening where a connection to host:port lands. Reads
    every process's descriptors: call it off the loop."""
    targets = addresses(host)
    if targets and not (targets & _local_addresses()) and not any(ip.startswith("127.") for ip in targets):
        return []  # Not this machine: nothing here can hold it.
    try:
        connections = psutil.net_connections("tcp")
    except psutil.Error:
        return []  # Cannot be told: the probe goes by the connection alone.
    found: dict[int | None, Holder] = {}
    for conn in connections:
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if not _reaches(conn.laddr.ip, targets) or conn.pid in found:
            continue
        found[conn.pid] = Holder(conn.pid, _name(conn.pid))
    return list(found.values())


def _name(pid: int | None) -> str:
    if pid is None:
        return ""
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return ""


def strangers(host: str, port: int, roots: Collection[int]) -> tuple[bool, list[Holder]]:
    """(a process of the trees of `roots` listens on host:port, the others
    that do). Call it off the loop."""
    ours, others = False, []
    for holder in listeners(host, port):
        if holder.pid is not None and owner(holder.pid, roots) is not None:
            ours = True
        else:
            others.append(holder)
    return ours, others
