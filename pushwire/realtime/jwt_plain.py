"""Client tokens of the plain shape, read in one pass: PyJWT costs ~130 µs a connect here.

PyJWT parses a token twice per `decode` (and tokens.py asked it a third time for the header),
checking base64 character by character in Python. Most tokens have the plain shape: three
canonical base64url segments, a header of only `alg`/`typ`/`kid`, JSON objects, no `aud`, and a
string `sub`/`jti` where present. For those `parse` returns the parts and `hs256_valid` checks
the signature as PyJWT does (HMAC-SHA256, constant-time compare). Anything else returns None and
goes to PyJWT, so this path never accepts a token PyJWT would refuse
(tests/realtime/test_jwt_plain.py compares the two on generated tokens).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Any, NamedTuple

import msgspec

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_HEADER_KEYS = frozenset(("alg", "typ", "kid"))
# PyJWT refuses HMAC keys shorter than the digest (enforce_minimum_key_length).
MIN_HS256_KEY = 32


class Plain(NamedTuple):
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _segment(text: str) -> bytes | None:
    if _SEGMENT.fullmatch(text) is None or len(text) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Canonical only (unused bits zero), as PyJWT: one token, one spelling.
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != text.encode():
        return None
    return raw


def parse(token: str) -> Plain | None:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    raw = [_segment(p) for p in parts]
    if raw[0] is None or raw[1] is None or raw[2] is None:
        return None
    try:
        header = msgspec.json.decode(raw[0])
        claims = msgspec.json.decode(raw[1])
    except (msgspec.DecodeError, ValueError):  # ValueError: also invalid UTF-8
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict) or not header.keys() <= _HEADER_KEYS:
        return None
    if not all(isinstance(header.get(k, ""), str) for k in _HEADER_KEYS):
        return None
    if "aud" in claims or not isinstance(claims.get("sub", ""), str) or not isinstance(claims.get("jti", ""), str):
        return None
    return Plain(header, claims, f"{parts[0]}.{parts[1]}".encode(), raw[2])


def hs256_valid(plain: Plain, secret: bytes) -> bool:
    return hmac.compare_digest(hmac.new(secret, plain.signing_input, hashlib.sha256).digest(), plain.signature)
