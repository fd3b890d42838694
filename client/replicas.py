"""Which Triton replicas a client talks to, and which of them answer.

``--url`` names one server (``host:port``), several (``a:8001,b:8001``), or a DNS name that
resolves to several addresses (``dns:///triton:8001``, as a Kubernetes headless Service does:
one A record per ready pod). A name is resolved again every ``resolve_every_s`` and whenever no
replica answers, so pods that come and go are followed without a restart.

Requests go round-robin over the replicas that answer; one that fails with an outage is set
aside for ``down_for_s`` and its request goes to the next one at once. Repository calls (load,
unload) go to every replica: ``TritonClient`` does both on top of this table.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DNS_SCHEME = "dns:///"


class BadAddress(ValueError):
    """A --url that names no server."""


@dataclass
class Replica:
    address: str  # host:port
    client: Any  # tritonclient.grpc.InferenceServerClient
    down_until: float = 0.0  # monotonic seconds; set aside until then after an outage

    def answering(self, now: float) -> bool:
        return now >= self.down_until


def split_url(url: str) -> tuple[list[str], str | None]:
    """(fixed addresses, DNS target): ``a:1,b:2`` -> ([a:1, b:2], None); ``dns:///n:p`` ->
    ([], n:p)."""
    url = url.strip()
    if url.startswith(DNS_SCHEME):
        target = url[len(DNS_SCHEME) :]
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise BadAddress(f"{url}: a DNS target is dns:///NAME:PORT")
        return [], target
    if "://" in url:
        raise BadAddress(f"{url}: give host:port[,host:port...] or dns:///NAME:PORT")
    addresses = [a.strip() for a in url.split(",") if a.strip()]
    if not addresses:
        raise BadAddress("no Triton address given (--url host:port)")
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise BadAddress(f"{address}: a Triton address is host:port")
    return list(dict.fromkeys(addresses)), None


def resolve(target: str) -> list[str]:
    """Every address a DNS name resolves to, as host:port, sorted; [] when it does not."""
    host, _, port = target.rpartition(":")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    found = set()
    for family, _, _, _, sockaddr in infos:
        ip = sockaddr[0]
        found.add(f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}")
    return sorted(found)


class Replicas:
    """The replicas of one ``--url``, each with its own gRPC client (``connect(address)``)."""

    def __init__(
        self,
        url: str,
        connect: Callable[[str], Any],
        resolve_every_s: float = 30.0,
        down_for_s: float = 5.0,
    ) -> None:
        self.url = url
        self._fixed, self._target = split_url(url)
        self._connect = connect
        self.resolve_every_s, self.down_for_s = resolve_every_s, down_for_s
        self._replicas: dict[str, Replica] = {}
        self._resolved_at = float("-inf")
        self._next = 0
        self.failovers = 0  # requests sent on to another replica after an outage
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Resolve the DNS name again (at most every ``resolve_every_s`` unless ``force``):
        replicas it no longer names are closed, new ones connected."""
        now = time.monotonic()
        if self._target is None:
            addresses = self._fixed
        elif force or now - self._resolved_at >= self.resolve_every_s:
            self._resolved_at = now
            addresses = resolve(self._target) or list(self._replicas)  # keep what we had
        else:
            return
        for gone in set(self._replicas) - set(addresses):
            self._replicas.pop(gone).client.close()
        for address in addresses:
            if address not in self._replicas:
                self._replicas[address] = Replica(address, self._connect(address))

    def all(self) -> list[Replica]:
        self.refresh()
        return list(self._replicas.values())

    def rotation(self) -> list[Replica]:
        """Every replica, in the order to try them for one request: those answering first,
        taking turns, then those set aside (still better than none)."""
        replicas = self.all()
        if not replicas:
            return []
        start = self._next % len(replicas)
        self._next += 1
        turn = replicas[start:] + replicas[:start]
        now = time.monotonic()
        return [r for r in turn if r.answering(now)] + [r for r in turn if not r.answering(now)]

    def set_aside(self, replica: Replica) -> None:
        replica.down_until = time.monotonic() + self.down_for_s

    def close(self) -> None:
        for replica in self._replicas.values():
            replica.client.close()
        self._replicas.clear()
