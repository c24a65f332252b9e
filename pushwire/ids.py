"""Identifier generators. Message ids sort by creation time (ULID layout) so logs and the console read in order."""

from __future__ import annotations

import base64
import os
import secrets
import time

_CROCKFORD = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


def message_ids(n: int) -> list[str]:
    """n ULIDs: 26 Crockford characters, 48-bit millisecond time then 80 random bits.

    base64's C encoder does the work (a ULID is 130 bits: the 128 in 20 bytes encode to 32
    characters whose first 6 are the 30 leading zero bits), and one urandom call serves all n:
    per id, a loop over 26 digits and a getrandom syscall cost more than the rest of a message.
    """
    stamp = int(time.time() * 1000) << 80
    noise = os.urandom(10 * n)
    out = []
    for i in range(n):
        value = stamp | int.from_bytes(noise[10 * i : 10 * i + 10])
        out.append(base64.b32encode(value.to_bytes(20)).translate(_FROM_RFC4648)[6:].decode())
    return out


def message_id() -> str:
    return message_ids(1)[0]


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
