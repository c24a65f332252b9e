"""Request signing of the server API (spec section 2). Pure functions: the server and the SDK share them."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote

HEADER_KEY = "X-Pushwire-Key"
HEADER_TIMESTAMP = "X-Pushwire-Timestamp"
HEADER_NONCE = "X-Pushwire-Nonce"
HEADER_SIGNATURE = "X-Pushwire-Signature"
TIMESTAMP_WINDOW = 300
NONCE_TTL = 600


def _encode(value: str) -> str:
    # Only unreserved characters stay literal; quote() emits upper-case hex as the spec asks.
    return quote(value, safe="-_.~")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    encoded = sorted((_encode(k), _encode(v)) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_query_from_string(raw_query: str) -> str:
    """The canonical form of a query string as received (decoded first, so any client encoding verifies)."""
    return canonical_query(parse_qsl(raw_query, keep_blank_values=True))


def string_to_sign(method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes) -> str:
    return "\n".join([method.upper(), path, query, timestamp, nonce, hashlib.sha256(body).hexdigest()])


def sign(secret: str, method: str, path: str, query: str, timestamp: str, nonce: str, body: bytes) -> str:
    """Lowercase hex HMAC-SHA256 of the string to sign; `query` is already canonical."""
    message = string_to_sign(method, path, query, timestamp, nonce, body)
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())
