"""Identifier generators. Message ids sort by creation time (ULID layout) so logs and the console read in order."""

from __future__ import annotations

import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def message_id() -> str:
    """26 characters: 48-bit millisecond time then 80 random bits."""
    return _b32(int(time.time() * 1000), 10) + _b32(secrets.randbits(80), 16)


def tenant_id() -> str:
    return "tn_" + secrets.token_hex(8)


def app_id() -> str:
    """Decimal digits, as Pusher-compatible SDKs require; never starts with 0."""
    return str(secrets.randbelow(9 * 10**8) + 10**8)


def server_key_id() -> str:
    return "sk_" + secrets.token_hex(10)


def client_key_id() -> str:
    return "ck_" + secrets.token_hex(10)


def secret() -> str:
    return secrets.token_urlsafe(32)


def user_account_id() -> str:
    return "us_" + secrets.token_hex(8)


def session_id() -> str:
    return "ss_" + secrets.token_hex(12)


def epoch() -> str:
    return secrets.token_hex(4)
