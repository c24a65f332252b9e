"""Normalising what people type for keys and apps: scopes, IP allow-lists, origins, public keys."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pushwire.tenants.errors import Invalid
from pushwire.tenants.views import SCOPES


def normalise_scopes(scopes: Sequence[str] | None) -> list[str]:
    if not scopes:
        return list(SCOPES)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise Invalid(f"unknown scope(s) {', '.join(unknown)}; use {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in scopes]


def normalise_cidrs(cidrs: Sequence[str] | None) -> list[str]:
    out = []
    for cidr in cidrs or ():
        try:
            out.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            raise Invalid(f"{cidr!r} is not an IPv4/IPv6 address or CIDR") from None
    return out


def normalise_origins(origins: Sequence[str] | None) -> list[str]:
    out = []
    for origin in origins or ():
        origin = origin.strip().rstrip("/")
        if not origin.startswith(("http://", "https://")) or "/" in origin.split("://", 1)[1]:
            raise Invalid(f"{origin!r} is not an origin (scheme://host[:port])")
        out.append(origin.lower())
    return out


def public_key_alg(pem: str) -> str:
    """RS256 for RSA keys, ES256 for P-256 keys; anything else is refused."""
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except ValueError:
        raise Invalid("not a PEM public key") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise Invalid("RSA keys must be at least 2048 bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise Invalid("only RSA (RS256) and P-256 EC (ES256) public keys are supported")
