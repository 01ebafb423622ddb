"""SSRF protection: the crawler connects only to public addresses, checked after DNS resolution.

The check sits in the network backend under httpx, at the moment a connection is opened: the host
is resolved once, every address it resolves to is checked (one private address refuses the host:
DNS answers can be mixed on purpose), and the socket is connected to a checked address. So there
is no gap between check and use for DNS rebinding to exploit, and each redirect hop, which opens
its own connection, is checked the same way. TLS still verifies the certificate against the host
name, because httpcore passes the name to ``start_tls`` separately from the address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedAddressError(Exception):
    """The host resolves to an address the crawler must not contact (private, loopback ...)."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host, self.address, self.reason = host, address, reason
        super().__init__(f"refusing {host!r}: it resolves to {address} ({reason})")


def blocked_reason(address: str | IPAddress) -> str | None:
    """Why an address is not public (``"loopback"``, ``"private"`` ...), or None when it is allowed."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:127.0.0.1 and friends reach the IPv4 host: judge the embedded address.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None:
            return blocked_reason(embedded)
    for reason, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if flag:
            return reason
    if not ip.is_global:  # shared address space 100.64/10, documentation ranges, ...
        return "not global"
    return None


async def resolve(host: str, port: int) -> list[str]:
    """All addresses ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0]).split("%")[0]  # drop an IPv6 zone id
        if address not in addresses:
            addresses.append(address)
    return addresses


def check_addresses(host: str, addresses: Iterable[str], allowed: Iterable[IPNetwork] = ()) -> None:
    """Raise ``BlockedAddressError`` if any address is not public and not in an ``allowed`` network."""
    networks = tuple(allowed)
    for address in addresses:
        reason = blocked_reason(address)
        if reason is not None and not any(ipaddress.ip_address(address) in net for net in networks):
            raise BlockedAddressError(host, address, reason)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore network backend that resolves, checks, then connects to the checked address.

    ``allow_networks`` (CIDR strings) are reachable even when private, e.g. an internal mirror.
    """

    def __init__(self, allow_private: bool = False, allow_networks: Iterable[str] = ()) -> None:
        self.allow_private = allow_private
        self.allow_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allow_networks)
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(resolve(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} resolves to no address")
        if not self.allow_private:
            check_addresses(host, addresses, self.allow_networks)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never used by the crawler")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx transport whose connections go through ``GuardedBackend``; no proxies, no environment."""

    def __init__(
        self, *, allow_private: bool = False, allow_networks: Iterable[str] = (), limits: httpx.Limits | None = None
    ) -> None:
        limits = limits or httpx.Limits()
        super().__init__(trust_env=False, limits=limits)
        # httpx builds its connection pool without a way to pass a network backend: replace the pool
        # with one that has it (same settings). httpx is pinned; tests/content/test_crawl_ssrf.py
        # fails loudly if a later version stops routing connections through the backend.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedBackend(allow_private=allow_private, allow_networks=allow_networks),
        )
