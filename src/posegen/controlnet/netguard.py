"""Which addresses a fetch may connect to (SSRF guard).

An address is reachable when it is globally routable and not multicast, after unwrapping the
IPv6 forms that carry an IPv4 address (mapped, compatible, 6to4, Teredo, NAT64), or when the
operator's allow-list names its host, the address, or a network containing it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from posegen.exceptions import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges Python 3.11's ``is_global`` lets through but which are not the public internet
# (shared address space, IETF protocol assignments, 6to4 relay anycast, NAT64, 6to4, ORCHIDv2,
# segment routing, documentation) plus the deprecated IPv4-compatible IPv6 block.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.88.99.0/24",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001:20::/28",
        "5f00::/16",
        "3fff::/20",
        "::/96",
    )
)
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPAT = ipaddress.ip_network("::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses carried inside an IPv6 address (mapped, compatible, 6to4, Teredo, NAT64)."""
    found: list[ipaddress.IPv4Address] = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in net for net in (*_NAT64, _IPV4_COMPAT)):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public(ip: IPAddress) -> bool:
    """True when ``ip`` (and every IPv4 address it wraps) is globally routable unicast."""
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        candidates.extend(embedded_ipv4(ip))
    for cand in candidates:
        if not cand.is_global or cand.is_multicast:
            return False
        if any(cand.version == net.version and cand in net for net in _EXTRA_BLOCKED):
            return False
    return True


def _getaddrinfo(host: str, port: int, timeout: float) -> list[Any]:
    """``getaddrinfo`` within ``timeout``: the system resolver has no deadline of its own, so it
    runs in a daemon thread that is abandoned (it ends with the resolver) if it is too slow."""
    box: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            box.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="posegen-resolve", daemon=True).start()
    if not done.wait(timeout):
        raise FetchError(f"resolving {host!r} took longer than the deadline", kind="timeout")
    if isinstance(box[0], Exception):
        raise FetchError(f"cannot resolve host {host!r}: {box[0]}", kind="connect") from box[0]
    return list(box[0])


@dataclass(frozen=True)
class AddressPolicy:
    """The allow-list from ``POSEGEN_FETCH_ALLOWLIST``: host names, addresses and networks."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_items(cls, items: Iterable[str]) -> AddressPolicy:
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item.strip("[]"), strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def allows(self, host: str, ip: IPAddress) -> bool:
        if host.lower().rstrip(".") in self.hosts:
            return True
        if any(ip.version == net.version and ip in net for net in self.networks):
            return True
        return is_public(ip)

    def resolve(self, host: str, port: int, timeout: float) -> list[IPAddress]:
        """Resolve ``host`` once; every address must be allowed (else ``blocked-address``).

        Numeric spellings (decimal ``2130706433``, octal ``0177.0.0.1``, short ``127.1``) are
        resolved by the system the same way a client would, then checked like any other."""
        infos = _getaddrinfo(host.strip("[]"), port, timeout)
        addresses: list[IPAddress] = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise FetchError(f"host {host!r} has no address", kind="connect")
        for ip in addresses:
            if not self.allows(host, ip):
                raise FetchError(
                    f"refusing to fetch from {host!r}: address {ip} is not public "
                    "(add it to POSEGEN_FETCH_ALLOWLIST to trust it)",
                    kind="blocked-address",
                )
        return addresses
