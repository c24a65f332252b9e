"""Caller IP resolution behind trusted proxies, and per-key IP allow-lists."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    # An IPv4-mapped IPv6 peer (::ffff:10.0.0.1) must match IPv4 rules.
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _trusted(addr: Address, trusted: Sequence[Network]) -> bool:
    return any(addr in net for net in trusted)


def client_ip(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> Address | None:
    """The caller's address.

    X-Forwarded-For is client-controlled unless the direct peer is a trusted proxy; then it is
    read right to left and the first address that is not itself a trusted proxy is the caller.
    """
    direct = _parse(peer or "")
    if direct is None or not forwarded_for or not _trusted(direct, trusted):
        return direct
    for hop in reversed(forwarded_for.split(",")):
        addr = _parse(hop)
        if addr is None:
            # A garbled hop: stop believing the header rather than skip past it.
            return direct
        if not _trusted(addr, trusted):
            return addr
        direct = addr
    return direct


def networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    """A key's allow-list, parsed once (it is cached with the key)."""
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def ip_allowed(addr: Address | None, allow: Sequence[Network]) -> bool:
    if not allow:
        return True
    if addr is None:
        return False
    return any(addr in net for net in allow)
