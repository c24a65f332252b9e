"""Caller IP behind proxies and allow-list matching."""

from __future__ import annotations

import ipaddress

from pushwire.tenants.ip_allow import client_ip, ip_allowed, networks

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def test_untrusted_peer_header_ignored() -> None:
    assert str(client_ip("198.51.100.1", "203.0.113.7", TRUSTED)) == "198.51.100.1"


def test_trusted_chain_read_right_to_left() -> None:
    assert str(client_ip("10.0.0.1", "6.6.6.6, 203.0.113.7, 10.0.0.5", TRUSTED)) == "203.0.113.7"
    assert str(client_ip("fd00::1", "2001:db8::9", TRUSTED)) == "2001:db8::9"


def test_garbled_hop_stops_trust() -> None:
    assert str(client_ip("10.0.0.1", "203.0.113.7, garbage", TRUSTED)) == "10.0.0.1"


def test_ipv4_mapped_peer_matches_ipv4_rules() -> None:
    assert ip_allowed(client_ip("::ffff:203.0.113.7", None, TRUSTED), networks(["203.0.113.0/24"]))


def test_allow_lists() -> None:
    assert ip_allowed(None, networks([]))
    assert not ip_allowed(None, networks(["0.0.0.0/0"]))
    assert ip_allowed(ipaddress.ip_address("2001:db8::1"), networks(["2001:db8::/32"]))
    assert not ip_allowed(ipaddress.ip_address("203.0.114.1"), networks(["203.0.113.0/24"]))
